"""A fake Azure OpenAI resource: OpenAI's chat behind deployments, on loopback.

It checks what Azure checks: `POST /openai/deployments/{deployment}/chat/completions` with an
`api-version` query parameter (or the v1 path `/openai/v1/chat/completions`), the key in the
`api-key` header, and that the deployment exists. The chat itself is the OpenAI fake's
(same validation against OpenAI's spec, same answers), dressed as Azure dresses it:
`prompt_filter_results` and `content_filter_results` in responses, a first stream chunk
that holds only the prompt filter results, and content-filter refusals in Azure's shape.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
from typing import Any

from aiohttp import web

from .fake_openai import FakeOpenAI, _ApiError, _chunks
from .fake_openai_more import HANDLERS as OPERATION_HANDLERS
from .fake_threaded import ThreadedServer

DEFAULT_API_KEY = "0123456789abcdef0123456789abcdef"
JSON_OPERATIONS = ("embeddings", "completions", "images/generations", "audio/speech")
FORM_OPERATIONS = ("audio/transcriptions", "audio/translations")
SAFE = {"filtered": False, "severity": "safe"}
FILTERS = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry."
)


class FakeAzure(ThreadedServer):
    name = "fake-azure"

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.deployments = {"gpt4o-prod": "gpt-4o"}  # deployment -> model
        self._openai = FakeOpenAI(api_key="unused")
        self.reset()

    def reset(self) -> None:
        self.forget()
        self.filter_prompt = False

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen, parsed = await self._record(request)
        parts = request.path.strip("/").split("/")
        try:
            if request.headers.get("api-key") != self.api_key:
                raise _azure(
                    401,
                    "401",
                    "Access denied due to invalid subscription key or wrong API endpoint. Make "
                    "sure to provide a valid key for an active subscription and use a correct "
                    "regional API endpoint for your resource.",
                )
            operation = "/".join(parts[3:])
            if parts[:2] == ["openai", "deployments"] and operation in JSON_OPERATIONS:
                return await self._operation(request, parts[2], operation, seen.body)
            if parts[:2] == ["openai", "deployments"] and operation in FORM_OPERATIONS:
                form = _form(request.headers.get("Content-Type", ""), await request.read())
                return await self._operation(request, parts[2], operation, form)
            if parts == ["openai", "v1", "chat", "completions"]:
                model = seen.body.get("model") if isinstance(seen.body, dict) else None
                if model not in self.deployments:
                    raise _azure(404, "DeploymentNotFound", "The API deployment does not exist.")
            elif (
                len(parts) == 5
                and parts[:2] == ["openai", "deployments"]
                and parts[3:] == ["chat", "completions"]
            ):
                if "api-version" not in request.query:
                    raise _azure(404, "404", "Resource not found")
                if parts[2] not in self.deployments:
                    raise _azure(
                        404,
                        "DeploymentNotFound",
                        "The API deployment for this resource does not exist. If you created "
                        "the deployment within the last 5 minutes, please wait a moment and try "
                        "again.",
                    )
                model = self.deployments[parts[2]]
            else:
                raise _azure(404, "404", "Resource not found")
            if self.filter_prompt:
                raise _content_filter()
            body = {**seen.body, "model": self.deployments.get(model, model)}
            completion, stream = self._openai._plan_chat(body, parsed)
            if stream:
                return await self._stream(request, completion, body)
            answer = self._openai._render(completion)
            answer["prompt_filter_results"] = [
                {"prompt_index": 0, "content_filter_results": FILTERS}
            ]
            for choice in answer["choices"]:
                choice["content_filter_results"] = FILTERS
            return web.json_response(answer)
        except _ApiError as error:
            return web.json_response(error.body, status=error.status)

    async def _operation(
        self, request: web.Request, deployment: str, operation: str, body: Any
    ) -> web.StreamResponse:
        """A JSON operation on a deployment, answered as OpenAI's fake answers it."""
        if "api-version" not in request.query:
            raise _azure(404, "404", "Resource not found")
        if deployment not in self.deployments:
            raise _azure(404, "DeploymentNotFound", "The API deployment does not exist.")
        if not isinstance(body, dict):
            raise _azure(400, "BadRequest", "The request body must be JSON.")
        # Azure takes the model from the deployment; a model in the body is ignored.
        body = {**body, "model": self.deployments[deployment]}
        return await OPERATION_HANDLERS["/v1/" + operation](request, body)

    async def _stream(
        self, request: web.Request, completion: Any, body: dict[str, Any]
    ) -> web.StreamResponse:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        first = {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTERS}],
        }
        events = [first, *_chunks(completion, include_usage)]
        for event in events:
            for choice in event.get("choices") or ():
                choice["content_filter_results"] = (
                    FILTERS if choice.get("finish_reason") is None else {}
                )
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response


def _azure(status: int, code: str, message: str) -> _ApiError:
    error = _ApiError(status, message)
    error.body = {"error": {"code": code, "message": message}}
    return error


def _content_filter() -> _ApiError:
    error = _ApiError(400, FILTER_MESSAGE)
    violence = {"filtered": True, "severity": "medium"}
    body: dict[str, Any] = {
        "error": {
            "message": FILTER_MESSAGE,
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {**FILTERS, "violence": violence},
            },
        }
    }
    error.body = body
    return error


def _form(content_type: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body as the OpenAI fake's handlers take it."""
    if not content_type.startswith("multipart/form-data"):
        raise _azure(400, "BadRequest", "The request must be multipart/form-data.")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is None:
            form[str(name)] = data.decode()
        else:
            form[str(name)] = {"filename": filename, "content_type": part.get_content_type(),
                               "data": data}  # fmt: skip
    return form
