"""The video paths of API.md §7 this gateway does not serve yet: Luma, Jimeng, MiniMax
(Hailuo) and Seedance. Each answers 501 in OpenAI's error shape, after the key and its
address are checked as on every path, so a client learns it is not there rather than that
it failed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from omnirelay.api.begin import begin_with, no_body
from omnirelay.wire.errors import GatewayError

PATHS = {
    ("POST", "/luma/generations"): "Luma",
    ("GET", "/luma/generations/{task_id}"): "Luma",
    ("POST", "/task/jimeng/text2video"): "Jimeng",
    ("POST", "/task/minimax/v1/video_generation"): "MiniMax (Hailuo)",
    ("POST", "/task/volces/seedance"): "Seedance",
}


class NotServed(GatewayError):
    status = 501
    type = "invalid_request_error"
    code = "not_implemented"


def handler_for(vendor: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def not_served(request: web.Request) -> web.Response:
        await begin_with(request, "not_served", no_body)
        raise NotServed(
            f"{vendor} videos are not served by this gateway yet. Use /v1/video/generations, "
            "/v1/videos or /kling/v1/videos with a channel that serves them."
        )

    return not_served
