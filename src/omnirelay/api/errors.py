"""Every failure leaves as OpenAI's error JSON with a truthful status and ``x-request-id``."""

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

log = logging.getLogger("omnirelay.api")

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_KEY = "omnirelay_request_id"

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


def error_response(error: GatewayError, request_id: str) -> web.Response:
    headers = {REQUEST_ID_HEADER: request_id}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(int(error.retry_after + 0.999), 1))
    return web.Response(
        status=error.status,
        body=orjson.dumps(error.body()),
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
        return error_response(error, request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(_from_http_exception(exc), request_id)
        if allow := exc.headers.get(hdrs.ALLOW):  # a 405 says which methods would do
            response.headers[hdrs.ALLOW] = allow
        return response
    except Exception:
        log.exception("unhandled error")
        failure = GatewayError("The gateway failed to handle this request; it has been logged.")
        return error_response(failure, request_id)
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response
