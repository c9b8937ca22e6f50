"""Typed errors for every way a call to the daemon can fail.

Every exception is an :class:`LLMasOSError` carrying the HTTP ``status`` and the server's
``message`` (read from OpenAI's ``{"error": {"message", "type", "param", "code"}}`` body on
``/v1`` and ``/os``, or Ollama's ``{"error": "..."}`` on ``/api``)::

    from llmasos import Client, NotFound, BadRequest

    client = Client()
    try:
        client.generate_text("Hi", model="no-such-model")
    except NotFound as e:
        print(e.status, e.message)   # 404 no model named 'no-such-model' in the registry ...
    except BadRequest as e:
        print(e.param)               # the request field at fault, when the server names one

The classes, by status: 400 (and 413, 422, 431) :class:`BadRequest`, 401
:class:`AuthenticationError`, 403 :class:`PermissionDenied`, 404 :class:`NotFound`, 409
:class:`Conflict`, 429 :class:`RateLimited`, 503 :class:`Unavailable`, any other 5xx
:class:`ServerError`. A route the daemon does not have (its 404 ``no route ...``, a 405, a 501)
is :class:`NotImplementedByServer`. An error the daemon reports inside a stream that had
already started (status 200) is :class:`StreamError`; a failure to reach the daemon at all is
:class:`ConnectionFailed`.
"""
from __future__ import annotations

import email.utils
import json
import time
from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "LLMasOSError",
    "BadRequest",
    "AuthenticationError",
    "PermissionDenied",
    "NotFound",
    "Conflict",
    "RateLimited",
    "ServerError",
    "Unavailable",
    "NotImplementedByServer",
    "StreamError",
    "ConnectionFailed",
]


class LLMasOSError(Exception):
    """Base class of every error this package raises.

    Attributes:
        status: the HTTP status, or None when there was none (the daemon could not be
            reached, or the error came inside a stream that had started with 200).
        message: the server's message (or a description of what failed).
        type: OpenAI's error ``type`` (``invalid_request_error``, ``server_error``), if given.
        param: the request field at fault, if the server named one (``temperature``,
            ``messages[2].content``).
        code: OpenAI's error ``code`` (``model_not_found``, ``not_found``), if given.
        body: the decoded error body (a dict), or the raw text when it was not JSON.
        retry_after: seconds the daemon asked the client to wait (its ``Retry-After``), on
            :class:`RateLimited` and :class:`Unavailable`; otherwise None.
    """

    def __init__(self, message: str, *, status: Optional[int] = None, type: Optional[str] = None,
                 param: Optional[str] = None, code: Optional[str] = None, body: Any = None,
                 retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.body = body

    def __str__(self) -> str:
        where = f" (param {self.param})" if self.param else ""
        return f"{self.status} {self.message}{where}" if self.status is not None else self.message + where


class BadRequest(LLMasOSError):
    """400: the request was refused as it stands (a bad field, a prompt too long, a body too
    large). ``param`` names the field when the server did."""


class AuthenticationError(LLMasOSError):
    """401: no API key, or one the daemon does not accept."""


class PermissionDenied(LLMasOSError):
    """403: the key is valid but lacks the scope the route needs."""


class NotFound(LLMasOSError):
    """404: an unknown model, process or task."""


class Conflict(LLMasOSError):
    """409: the request conflicts with the daemon's state (deleting a model in use)."""


class RateLimited(LLMasOSError):
    """429: a rate or concurrency limit. ``retry_after`` is the number of seconds the daemon
    asked the client to wait (None when it did not say)."""


class ServerError(LLMasOSError):
    """5xx: the daemon failed (a generation that ended with an error, a model that does not fit
    the memory budget, ...)."""


class Unavailable(ServerError):
    """503: not ready yet, typically while a model loads. ``retry_after`` is the number of
    seconds the daemon suggests waiting (None when it did not say)."""


class NotImplementedByServer(LLMasOSError):
    """The daemon has no such route (yet): ``route`` names it, e.g. ``POST /os/jobs``.

    Raised instead of :class:`NotFound` when the 404 is the router's ``no route ...`` rather
    than an unknown object, and for a 405 or 501. An older daemon than this package answers so
    for the routes it lacks."""

    def __init__(self, message: str, *, route: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.route = route


class StreamError(LLMasOSError):
    """An error the daemon sent inside a stream that had started (HTTP status 200): a
    generation that ended early (its process was killed, or failed), a pull that failed.
    ``status`` is None; ``type`` is the error's type when the server gave one."""


class ConnectionFailed(LLMasOSError):
    """The daemon could not be reached, or the connection broke or timed out. ``__cause__`` is
    the underlying httpx error."""


_BY_STATUS: Dict[int, Type[LLMasOSError]] = {
    400: BadRequest,
    413: BadRequest,
    422: BadRequest,
    431: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
    503: Unavailable,
}


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date.
    None when absent or unreadable.

    >>> parse_retry_after("3")
    3.0
    >>> parse_retry_after(None) is None
    True
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
        return seconds if seconds >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_fields(body: Any) -> Dict[str, Any]:
    """message/type/param/code from an OpenAI- or Ollama-shaped error body (or {})."""
    if not isinstance(body, Mapping):
        return {}
    err = body.get("error")
    if isinstance(err, str):  # Ollama: {"error": "..."}
        return {"message": err}
    if isinstance(err, Mapping):  # OpenAI: {"error": {"message", "type", "param", "code"}}
        out: Dict[str, Any] = {}
        for key in ("message", "type", "param", "code"):
            value = err.get(key)
            if value is not None:
                out[key] = str(value)
        return out
    return {}


def error_from_response(status: int, text: str, headers: Mapping[str, str], route: str) -> LLMasOSError:
    """The exception for an HTTP error answer to ``route`` ("METHOD /path").

    >>> e = error_from_response(404, '{"error": "no model named \\'x\\'"}', {}, "POST /api/generate")
    >>> type(e).__name__, e.status, e.message
    ('NotFound', 404, "no model named 'x'")
    """
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = text
    fields = _error_fields(body)
    message = fields.pop("message", None) or (text.strip()[:500] if text else "") or f"HTTP {status}"
    kwargs: Dict[str, Any] = dict(status=status, body=body, **fields)
    # The router's own 404 ("no route GET /os/jobs"), a 405 (the path is known, the method
    # not) and 501 mean the daemon lacks the route, not the object.
    if (status == 404 and message.startswith("no route ")) or status in (405, 501):
        return NotImplementedByServer(f"the daemon does not implement {route}: {message}", route=route, **kwargs)
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else LLMasOSError
    if cls in (RateLimited, Unavailable):
        kwargs["retry_after"] = parse_retry_after(headers.get("retry-after"))
    return cls(message, **kwargs)


def error_from_stream(event: Mapping[str, Any]) -> StreamError:
    """The exception for an error object inside a stream (an SSE event or an NDJSON line)."""
    fields = _error_fields(event)
    message = fields.pop("message", None) or json.dumps(event)[:500]
    return StreamError(message, body=dict(event), **fields)
