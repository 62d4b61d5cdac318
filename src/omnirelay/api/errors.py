"""Every failure leaves as an error JSON with a truthful status and ``x-request-id``.

The shape is OpenAI's, except on Google's Gemini API: every path under ``/v1beta`` (aiohttp's
own 404 and 405 included) and any request a Gemini handler has claimed with
:func:`answer_errors_as_google` (its paths under ``/v1`` are shared with OpenAI's) answer
Google's ``{"error": {"code", "message", "status"}}``. The middleware is the one place that
chooses; handlers raise.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import hdrs, web

from omnirelay.logs import REQUEST_ID
from omnirelay.wire.errors import GatewayError, InvalidRequest, NotFound, RequestTooLarge
from omnirelay.wire.gemini_answers import error_body as google_error_body

log = logging.getLogger("omnirelay.api")

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_KEY = "omnirelay_request_id"
GOOGLE_ERRORS_KEY = "omnirelay_google_errors"
GOOGLE_PREFIX = "/v1beta"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _RequestIds:
    """Unique ids without a system call each: a random prefix per process and a counter.

    ``secrets.token_hex`` reads the kernel's random source on every call, which cost ~9 µs
    here. Ids must be unique (the ledger is keyed by them), not secret. A forked worker
    draws its own prefix.
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix = "req_" + secrets.token_hex(6)
        self._counter = itertools.count(secrets.randbelow(1 << 24))

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFF_FFFF_FFFF:012x}"


new_request_id = _RequestIds().new


def answer_errors_as_google(request: web.Request) -> None:
    """Errors of this request leave in Google's shape (a Gemini path outside ``/v1beta``)."""
    request[GOOGLE_ERRORS_KEY] = True


def speaks_google(request: web.Request) -> bool:
    path = request.path
    return (
        request.get(GOOGLE_ERRORS_KEY, False)
        or path == GOOGLE_PREFIX
        or path.startswith(GOOGLE_PREFIX + "/")
    )


def error_response(error: GatewayError, request_id: str, google: bool = False) -> web.Response:
    headers = {REQUEST_ID_HEADER: request_id}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(int(error.retry_after + 0.999), 1))
    body = google_error_body(error.status, error.message) if google else error.body()
    return web.Response(
        status=error.status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=headers,
    )


def _from_http_exception(exc: web.HTTPException) -> GatewayError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return RequestTooLarge(
            "The request body is larger than this gateway accepts; send a smaller one."
        )
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("Unknown path. See the API reference for the paths this gateway serves.")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        error = InvalidRequest(
            f"Method not allowed here; use {', '.join(sorted(exc.allowed_methods))}."
        )
        error.status = 405
        error.code = "method_not_allowed"
        return error
    error = InvalidRequest(exc.reason or "The request could not be handled.")
    error.status = exc.status
    return error


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = new_request_id()
    request[REQUEST_ID_KEY] = request_id
    REQUEST_ID.set(request_id)
    try:
        response = await handler(request)
    except GatewayError as error:
        return error_response(error, request_id, speaks_google(request))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(_from_http_exception(exc), request_id, speaks_google(request))
        if allow := exc.headers.get(hdrs.ALLOW):  # a 405 says which methods would do
            response.headers[hdrs.ALLOW] = allow
        return response
    except Exception:
        log.exception("unhandled error")
        failure = GatewayError("The gateway failed to handle this request; it has been logged.")
        return error_response(failure, request_id, speaks_google(request))
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response
