"""Produce patpush tasks and done messages from Python.

Three calls cover a Python portal such as Plone:

- ``enqueue_task(api_url, api_key, **task)`` adds an HTTP task through the
  push server's ``POST /api/tasks`` and returns the task id.
- ``publish_done(redis_client, message)`` appends a done message to the Redis
  stream ``<prefix>done`` with ``XADD ... MAXLEN ~ 10000``, which every push
  server reads. It needs a redis-py client and a push server that uses Redis.
- ``publish_done_api(api_url, api_key, message)`` publishes a done message
  through ``POST /api/publish`` instead, for deployments without Redis.

The HTTP calls use only the standard library (urllib.request). redis-py is
needed only to create the client passed to ``publish_done``.

The auth view the portal must offer (its URL is the push server's
``authUrl``):

- ``GET`` with the browser's session cookie (Plone: ``__ac``); the push
  server forwards only the allow-listed cookies.
- A valid session returns ``200`` with ``Content-Type: application/json`` and
  ``{"user": "<user id>", "channels": ["<channel>", ...]}``. The user id must
  be the one that done messages name in ``user``.
- An anonymous or expired session returns ``401`` and a user without access
  returns ``403``. The view must not redirect to a login form, because the
  push server treats a redirect as a portal failure (``503``).
- Send ``Cache-Control: no-store``; the push server caches the result itself.
"""

import json
import re
import urllib.error
import urllib.request

DEFAULT_PREFIX = "patpush:"
"""Default prefix of patpush's Redis keys; the done stream is ``patpush:done``."""

DEFAULT_STREAM_MAX_LEN = 10000
"""Approximate maximum number of entries kept in the done stream (``MAXLEN ~``)."""

_EVENT_NAME = re.compile(r"^[A-Za-z][\w:.-]{0,63}$", re.ASCII)

_MAX_HTML_CHARS = 64 * 1024


class PatpushApiError(Exception):
    """Raised when the push server API rejects a request.

    ``status`` is the HTTP status, ``error`` the server's error phrase and
    ``problems`` the list of ``path: rule`` lines of a 400 response.
    """

    def __init__(self, status, error, problems=()):
        self.status = status
        self.error = error
        self.problems = list(problems)
        detail = "; ".join(self.problems)
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"patpush API returned {status}: {error}{suffix}")


def _post_json(api_url, api_key, path, payload, timeout):
    """POST ``payload`` as JSON to ``api_url + path`` and return the decoded JSON response."""
    request = urllib.request.Request(
        api_url.rstrip("/") + path,
        data=json.dumps(payload).encode("utf-8"),
        method="POST",
        headers={
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read().decode("utf-8"))
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        raise PatpushApiError(
            error.code, body.get("error", error.reason), body.get("problems", ())
        ) from None


def enqueue_task(api_url, api_key, timeout=10.0, **task):
    """Add an HTTP task through ``POST /api/tasks`` and return its id.

    ``api_url`` is the push server's base URL, such as ``http://127.0.0.1:8481``.
    ``task`` takes the fields of the API: ``url`` (absolute, on an allowed
    origin), ``name``, and optionally ``data``, ``headers``, ``cookies`` (only
    allow-listed names), ``authorization``, ``authenticator`` (sent as the
    ``_authenticator`` form field), ``countdown``, ``eta``, ``expires``,
    ``debounce_key`` or ``debounceKey``, ``attempts`` and ``queue``. Raises
    PatpushApiError when the server rejects the task.
    """
    if "debounce_key" in task:
        task["debounceKey"] = task.pop("debounce_key")
    return _post_json(api_url, api_key, "/api/tasks", task, timeout)["id"]


def publish_done_api(api_url, api_key, message, timeout=10.0):
    """Publish a done message through ``POST /api/publish``.

    Raises ValueError for a message that the push server would reject, and
    PatpushApiError when the server rejects it all the same.
    """
    check_message(message)
    _post_json(api_url, api_key, "/api/publish", message, timeout)


def publish_done(redis_client, message, prefix=DEFAULT_PREFIX, maxlen=DEFAULT_STREAM_MAX_LEN):
    """Append a done message to the stream ``<prefix>done`` and return the entry id.

    Sends ``XADD <prefix>done MAXLEN ~ <maxlen> * message <json>``. The
    stream is durable: a push server that was briefly disconnected from Redis
    reads the entry once it is back. Raises ValueError for a message that
    push servers would skip as invalid.
    """
    check_message(message)
    entry_id = redis_client.xadd(
        f"{prefix}done",
        {"message": json.dumps(message, separators=(",", ":"))},
        maxlen=maxlen,
        approximate=True,
    )
    # A client made without decode_responses=True returns the id as bytes.
    return entry_id.decode("ascii") if isinstance(entry_id, bytes) else entry_id


def check_message(message):
    """Raise ValueError unless ``message`` has the shape of a done message.

    The push server validates every message again. This check catches the
    common mistakes early, where the caller can still see them, because a
    push server only logs and skips an invalid stream entry.
    """
    if not isinstance(message, dict):
        raise ValueError("a done message must be a dict")
    unknown = set(message) - {"user", "channel", "html", "event", "data", "pushId"}
    if unknown:
        raise ValueError(f"unknown done message keys: {', '.join(sorted(unknown))}")
    if ("user" in message) == ("channel" in message):
        raise ValueError("a done message must name exactly one recipient: user or channel")
    if not any(key in message for key in ("html", "event", "pushId")):
        raise ValueError("a done message must carry html, event or pushId")
    for key in ("user", "channel", "pushId"):
        if key in message and not (isinstance(message[key], str) and 1 <= len(message[key]) <= 256):
            raise ValueError(f"{key} must be a string of 1-256 characters")
    if "event" in message and not (
        isinstance(message["event"], str) and _EVENT_NAME.match(message["event"])
    ):
        raise ValueError("event must be a DOM event name of 1-64 word characters")
    if "html" in message and not (
        isinstance(message["html"], str) and len(message["html"]) <= _MAX_HTML_CHARS
    ):
        raise ValueError(f"html must be a string of at most {_MAX_HTML_CHARS} characters")
