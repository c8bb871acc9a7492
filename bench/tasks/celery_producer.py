"""Task producer of the Celery benchmark: sends BENCH_COUNT tasks with
apply_async, as fast as one thread can (burst) or at BENCH_RATE per second
(paced), then prints one JSON report line like the Node.js producers.

Each form carries t (enqueue time in microseconds from time.monotonic_ns(),
the CLOCK_MONOTONIC that the portal endpoint reads) and n (sequence number).

Env: BENCH_REDIS_URL, BENCH_ENDPOINT_URL, BENCH_JOB_BYTES, BENCH_MODE,
BENCH_COUNT, BENCH_RATE, BENCH_DEADLINE_MS.
"""
import json
import os
import signal
import sys
import time

from celery_app import app, post_task

# The same task as bench/tasks/task-payload.ts sends.
TASK_NAME = "bench.post"
CSRF_TOKEN = "3f1c2a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39"
PAD_BYTES = 256
TASK_PATH = "/run-task"


def now_us():
    return time.monotonic_ns() // 1000


def task_args(url, n, pad):
    form = {"t": str(now_us()), "n": str(n), "pad": pad, "_authenticator": CSRF_TOKEN}
    headers = {"X-Task-Name": TASK_NAME}
    cookies = {"__ac": "u1-s1"}
    return (url, form, headers, cookies)


def main():
    url = os.environ["BENCH_ENDPOINT_URL"] + TASK_PATH
    mode = os.environ.get("BENCH_MODE", "burst")
    count = int(os.environ.get("BENCH_COUNT", "200"))
    rate = float(os.environ.get("BENCH_RATE", "200"))
    deadline_s = int(os.environ.get("BENCH_DEADLINE_MS", "120000")) / 1000

    # Pads the form so the task arguments have the size of patpush's stored job.
    sample = len(json.dumps(task_args(url, 0, "x" * PAD_BYTES)))
    target = int(os.environ.get("BENCH_JOB_BYTES", str(sample)))
    pad = "x" * max(0, PAD_BYTES + target - sample)

    signal.signal(signal.SIGALRM, lambda *_: sys.exit(f"producer did not finish within {deadline_s} s"))
    signal.setitimer(signal.ITIMER_REAL, deadline_s)

    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=3)
    args_bytes = len(json.dumps(task_args(url, 0, pad)))
    print(json.dumps({"ready": True, "impl": "celery-producer", "argsBytes": args_bytes}), flush=True)

    enqueued = failed = 0
    first_error = None
    first_us = last_us = 0
    period_us = 1_000_000 / rate
    cpu_start = time.process_time()
    start_us = now_us()
    for n in range(count):
        if mode == "paced":
            wait_us = start_us + n * period_us - now_us()
            if wait_us > 0:
                time.sleep(wait_us / 1_000_000)
        last_us = now_us()
        if first_us == 0:
            first_us = last_us
        try:
            post_task.apply_async(args=task_args(url, n, pad))
            enqueued += 1
        except Exception as error:  # counted and reported, so one broker error does not end the run
            failed += 1
            first_error = first_error or repr(error)

    report = {
        "result": True,
        "enqueued": enqueued,
        "failed": failed,
        "firstEnqueueUs": first_us,
        "lastEnqueueUs": last_us,
        "cpuMs": (time.process_time() - cpu_start) * 1000,
    }
    if first_error is not None:
        report["firstError"] = first_error
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
