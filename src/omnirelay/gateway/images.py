"""POST /v1/images/generations, /edits and /variations: billed per image, by size and quality.

The hold prices the request's images at the most a matching size and quality may cost;
the charge prices the images the upstream returned, at the size and quality it reports
(``gpt-image-1`` does), else those asked for, else the model's defaults.
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.op_checks import one_of, optional_int, optional_str, required_str
from omnirelay.gateway.operations import Charged, Operation, OperationRunner, Reply, StreamReply
from omnirelay.gateway.pricing import Quote, apply_multiplier
from omnirelay.gateway.routing import Route
from omnirelay.gateway.uploads import check_image, require_file
from omnirelay.providers.openai_ops import json_object
from omnirelay.providers.operations import ImagesProvider, ImageVariationsProvider
from omnirelay.wire.errors import UpstreamError
from omnirelay.wire.uploads import Upload

GENERATIONS = "images.generations"
EDITS = "images.edits"
VARIATIONS = "images.variations"
DEFAULT_MODEL = "dall-e-2"
DEFAULT_SIZE = "1024x1024"
RESPONSE_FORMATS = ("url", "b64_json")
AUTO = "auto"


class Images:
    def __init__(self, runner: OperationRunner) -> None:
        self._runner = runner

    async def generate(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        required_str(body, "prompt")
        return await self._run(call, body, None, variation=False)

    async def edit(self, call: Call, upload: Upload) -> Reply | StreamReply:
        fields = dict(upload.fields)
        required_str(fields, "prompt")
        images = [part for part in upload.files if part.name in ("image", "image[]")]
        if not images:
            require_file(None, "image")
        for part in images:
            check_image(part)
        if (mask := upload.file("mask")) is not None:
            check_image(mask)
        return await self._run(call, fields, upload, variation=False)

    async def vary(self, call: Call, upload: Upload) -> Reply | StreamReply:
        check_image(require_file(upload.file("image"), "image"))
        return await self._run(call, dict(upload.fields), upload, variation=True)

    async def _run(
        self, call: Call, fields: dict[str, Any], upload: Upload | None, *, variation: bool
    ) -> Reply | StreamReply:
        model = optional_str(fields, "model") or DEFAULT_MODEL
        one_of(fields.get("response_format"), RESPONSE_FORMATS, "response_format")
        n = optional_int(fields, "n", 1)
        size, quality = optional_str(fields, "size"), optional_str(fields, "quality")

        async def attempt(route: Route, quote: Quote) -> Charged:
            provider = self._runner.providers.provider(route.channel.type)
            if variation:
                if not isinstance(provider, ImageVariationsProvider) or upload is None:
                    raise UpstreamError(f"Channel type '{route.channel.type}' has no variations.")
                request = provider.image_variation_request(
                    route.endpoint, upload, route.upstream_model
                )
            elif not isinstance(provider, ImagesProvider):
                raise UpstreamError(f"Channel type '{route.channel.type}' cannot serve images.")
            elif upload is None:
                body = {**fields, **route.body_overrides}
                request = provider.image_generation_request(
                    route.endpoint, body, route.upstream_model
                )
            else:
                request = provider.image_edit_request(route.endpoint, upload, route.upstream_model)
            response = await self._runner.send(provider, request, route)
            payload = await self._runner.read(call, response)
            data = json_object(payload, "data")
            count = len(data["data"]) if isinstance(data["data"], list) else 0
            got_size = data.get("size") if data.get("size") not in (None, AUTO) else size
            got_quality = (
                data.get("quality") if data.get("quality") not in (None, AUTO) else quality
            )
            cost = image_cost(quote, model, got_size, got_quality, count)
            return Charged(Reply(orjson.dumps(data)), cost)

        hold = lambda quote: image_cost(quote, model, size, quality, n)  # noqa: E731
        return await self._runner.run(call, Operation(model, hold, attempt))


def image_cost(quote: Quote, model: str, size: Any, quality: Any, n: int) -> int:
    """``n`` images; an unknown (``auto``) size or quality costs the most it may."""
    size = size if isinstance(size, str) and size != AUTO else None
    quality = quality if isinstance(quality, str) and quality != AUTO else None
    if model.startswith("dall-e-3"):
        quality = quality or "standard"
    if size is not None and (quality is not None or size in quote.price.units.images):
        return quote.images(size, quality, n)
    prefix = f"{size}/" if size else ""
    table = quote.price.units.images
    matching = [nano for name, nano in table.items() if name == size or name.startswith(prefix)]
    if not matching:
        return quote.images(size or DEFAULT_SIZE, quality, n)  # refuses with what is missing
    return apply_multiplier(max(matching) * max(n, 0), quote.multiplier_ppm)
