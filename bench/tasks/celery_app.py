"""Celery app of the task benchmark: one task that POSTs the benchmark form
to the portal endpoint with requests, as a Celery-based portal dispatcher
would.

Env: BENCH_REDIS_URL (the broker). The worker prints one JSON line
{"ready": true, ...} on standard output once its pool is up.
"""
import json
import os

import requests
from celery import Celery
from celery.signals import worker_ready

app = Celery("bench_tasks", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    # The ready line must reach standard output, not the log.
    worker_redirect_stdouts=False,
)

_session = None


def _http_session():
    """Return this process's keep-alive session, created after the pool forked."""
    global _session
    if _session is None:
        _session = requests.Session()
    return _session


@app.task(name="bench.post")
def post_task(url, form, headers, cookies):
    """POST the task form to the portal endpoint; raise unless it returns 200."""
    response = _http_session().post(url, data=form, headers=headers, cookies=cookies, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"POST {url} returned {response.status_code}")


@worker_ready.connect
def _announce_ready(**_kwargs):
    print(json.dumps({"ready": True, "impl": "celery-worker"}), flush=True)
