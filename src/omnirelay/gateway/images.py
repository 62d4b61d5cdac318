"""POST /v1/images/generations, /edits and /variations: billed per image, by size and quality.

The hold prices the request's images at the most a matching size and quality may cost;
the charge prices the images the upstream returned, at the size and quality it reports
(``gpt-image-1`` does), else those asked for, else the model's defaults.
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.op_checks import one_of, optional_int, optional_str, required_str
from omnirelay.gateway.operation import Attempt, Charged, Operation, Reply, StreamReply
from omnirelay.gateway.pricing import Quote, apply_multiplier
from omnirelay.gateway.uploads import check_image, require_file
from omnirelay.providers.openai_ops import json_object
from omnirelay.providers.operations import ErrorMapper, ImagesProvider, ImageVariationsProvider
from omnirelay.wire.uploads import Upload

GENERATIONS = "images.generations"
EDITS = "images.edits"
VARIATIONS = "images.variations"
DEFAULT_MODEL = "dall-e-2"
DEFAULT_SIZE = "1024x1024"
RESPONSE_FORMATS = ("url", "b64_json")
AUTO = "auto"


class Images:
    def __init__(self, kit: Kit) -> None:
        self._kit = kit

    async def generate(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        required_str(body, "prompt")
        return await self._kit.pipeline.run(call, self.operation(body, None, variation=False))

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
        return await self._kit.pipeline.run(call, self.operation(fields, upload, variation=False))

    async def vary(self, call: Call, upload: Upload) -> Reply | StreamReply:
        check_image(require_file(upload.file("image"), "image"))
        operation = self.operation(dict(upload.fields), upload, variation=True)
        return await self._kit.pipeline.run(call, operation)

    def operation(
        self, fields: dict[str, Any], upload: Upload | None, *, variation: bool
    ) -> Operation:
        model = optional_str(fields, "model") or DEFAULT_MODEL
        one_of(fields.get("response_format"), RESPONSE_FORMATS, "response_format")
        n = optional_int(fields, "n", 1)
        size, quality = optional_str(fields, "size"), optional_str(fields, "quality")

        async def attempt(attempt: Attempt) -> Charged:
            data = await self._attempt(attempt, fields, upload, variation)
            # An upstream that returns more images than asked for is not paid for them.
            count = min(len(data["data"]) if isinstance(data["data"], list) else 0, n)
            got_size = data.get("size") if data.get("size") not in (None, AUTO) else size
            got_quality = (
                data.get("quality") if data.get("quality") not in (None, AUTO) else quality
            )
            cost = image_cost(attempt.quote, model, got_size, got_quality, count)
            return Charged(Reply(orjson.dumps(data)), cost)

        hold = lambda quote: image_cost(quote, model, size, quality, n)  # noqa: E731
        return Operation(model, hold, attempt)

    async def _attempt(
        self, attempt: Attempt, fields: dict[str, Any], upload: Upload | None, variation: bool
    ) -> dict[str, Any]:
        kit, route = self._kit, attempt.route
        if variation:
            varies = kit.provider(route, ImageVariationsProvider, "image variations")
            assert upload is not None
            request = varies.image_variation_request(route.endpoint, upload, route.upstream_model)
            provider: ErrorMapper = varies
        else:
            images = kit.provider(route, ImagesProvider, "images")
            if upload is None:
                body = {**fields, **route.body_overrides}
                request = images.image_generation_request(
                    route.endpoint, body, route.upstream_model
                )
            else:
                request = images.image_edit_request(route.endpoint, upload, route.upstream_model)
            provider = images
        response = await kit.upstream.send(provider, request, route)
        return json_object(await kit.upstream.read(attempt.call, response), "data")


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
