"""The Responses API (``/v1/responses``) as an operation of the pipeline, and its state.

Each attempt's route decides the way:

- a channel that serves the Responses API itself (OpenAI's; any channel's
  ``responses_api`` option) gets the request natively: the body as the client sent it,
  except that a continued conversation (``previous_response_id``) and ``item_reference``
  items are spelled out and ``store`` is false, since the gateway keeps the state. It is
  metered from the response's usage, checked against the gateway's own counts, and its
  stream by :class:`~omnirelay.gateway.responses_stream.NativeStream`.
- every other channel gets it as the canonical chat body (``wire.responses_chat``) and runs as a
  chat attempt (``Chat.attempt``), so it is charged exactly as the same call through Chat
  Completions; the answer is told back as a ``response`` object or its event stream.

The hold is chat's: every byte of what is sent as a prompt token (a continued conversation
included), plus ``max_output_tokens`` or ``hold_output_tokens``.

With ``background: true`` the call answers at once with the response ``queued``, and runs
later on the task engine (``gateway.responses_background``) through :meth:`Responses.settled`:
the same operation, through the same pipeline, so it is charged exactly as in the
foreground.

With ``store`` (the default), a response that ended is kept with every item it was made
from and made (``store.responses``) before its last event leaves, so a client can fetch it,
list its input items, or continue from it at once, on any channel. A stored response
belongs to the key that made it: to any other key it does not exist.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from omnirelay.gateway.calls import Call
from omnirelay.gateway.chat import Chat
from omnirelay.gateway.keys import KeyCache
from omnirelay.gateway.kit import Kit
from omnirelay.gateway.operation import (
    Attempt,
    Charged,
    Operation,
    Reply,
    Streaming,
    StreamReply,
)
from omnirelay.gateway.output import OutputTally, SpendLimit, output_cap
from omnirelay.gateway.requests import check_chat_request
from omnirelay.gateway.responses_stream import NativeStream, TranslatedStream
from omnirelay.gateway.token_stream import Lazy
from omnirelay.gateway.usage_check import Counts, trusted_usage
from omnirelay.providers.operations import ResponsesProvider
from omnirelay.store.responses import ResponseRepository, StoredResponse
from omnirelay.wire import responses as shape
from omnirelay.wire import responses_chat
from omnirelay.wire.chat import usage_object
from omnirelay.wire.errors import InvalidRequest, NotFound, UpstreamError
from omnirelay.wire.responses_events import ResponseEvents
from omnirelay.wire.tokens import utf8_length

log = logging.getLogger("omnirelay.responses")

ENDPOINT = "responses"
MAX_PAGE = 100
DEFAULT_PAGE = 20
NOT_STORED = (
    "Response with id '{}' not found. Responses are kept only when created with "
    "store: true, by the key that made them, for the gateway's retention period."
)


@dataclass(slots=True)
class Plan:
    """One ``POST /v1/responses`` call, its conversation spelled out."""

    body: dict[str, Any]
    request: shape.ResponsesRequest
    response_id: str
    created_at: int
    context: list[dict[str, Any]]
    """The items of the conversation it continues (``previous_response_id``), in order."""
    given: Any
    """Its ``input``, with each ``item_reference`` replaced by the item it names."""
    items: list[dict[str, Any]]
    """Its own input, as stored items."""
    spelled_out: bool
    _chat: dict[str, Any] | None = None

    @property
    def all_items(self) -> list[dict[str, Any]]:
        return self.context + self.items

    @property
    def patch(self) -> dict[str, Any]:
        """What the gateway says of the response, whatever the upstream said."""
        patch: dict[str, Any] = {
            "id": self.response_id,
            "store": self.request.store,
            "previous_response_id": self.request.previous_response_id,
            "background": self.request.background,
        }
        if self.request.background:
            patch["created_at"] = self.created_at  # it was made when it was queued
        return patch

    def response_object(self) -> dict[str, Any]:
        return shape.response_object(self.body, self.request, self.response_id, self.created_at)

    def chat_body(self) -> dict[str, Any]:
        if self._chat is None:
            self._chat = responses_chat.to_chat(self.body, self.all_items, self.request.model)
        return self._chat

    def upstream_body(self) -> dict[str, Any]:
        """The body for an upstream that serves the Responses API itself."""
        body = {
            name: value
            for name, value in self.body.items()
            if name not in ("previous_response_id", "background")
        }
        body["store"] = False
        if self.spelled_out:
            given = self.given
            if isinstance(given, str):
                given = [{"type": "message", "role": "user", "content": given}]
            body["input"] = [shape.as_input(item) for item in self.context] + list(given or ())
        return body


@dataclass(slots=True)
class Outcome:
    """How one call ended: a complete answer, or the stream that tells it."""

    response: dict[str, Any] | None = None
    stream: NativeStream | TranslatedStream | None = None
    kept: bool = False

    def ended(self) -> dict[str, Any] | None:
        if self.response is not None:
            return self.response
        return self.stream.response if self.stream is not None else None


@dataclass(frozen=True, slots=True)
class ItemsQuery:
    limit: int = DEFAULT_PAGE
    descending: bool = True
    after: str | None = None


ACTIVE = ("queued", "in_progress")
"""The statuses of a background response that has not ended."""


class Background(Protocol):
    """Where background responses run (``gateway.responses_background``)."""

    async def submit(self, call: Call, plan: Plan) -> dict[str, Any]:
        """Keep the response queued and its task due; the queued response."""
        ...

    async def cancel(self, stored: StoredResponse) -> dict[str, Any]:
        """Stop it, wherever it runs; the response as it ended."""
        ...


class Responses:
    background: Background | None = None
    """Set once the task engine exists; without it, ``background: true`` is refused."""

    def __init__(
        self,
        kit: Kit,
        chat: Chat,
        store: ResponseRepository | None,
        *,
        hold_output_tokens: int = 4096,
    ) -> None:
        self._kit = kit
        self._chat = chat
        self._store = store
        self._hold_output_tokens = hold_output_tokens

    # -- POST /v1/responses ----------------------------------------------------------------

    async def create(self, call: Call, body: dict[str, Any]) -> Reply | StreamReply:
        request = shape.check_request(body)
        if request.background:
            return await self._queue(call, body, request)
        plan = await self._plan(call, body, request)
        outcome = Outcome()
        result = await self._kit.pipeline.run(call, self._operation(call, plan, outcome))
        if isinstance(result, Reply):
            await self._keep(call, plan, outcome)
            return result
        await self._keep(call, plan, outcome)  # a stream that ended in its first chunk
        rest = self._kept(call, plan, outcome, result.rest)
        return StreamReply(result.content_type, result.first, rest)

    async def _queue(
        self, call: Call, body: dict[str, Any], request: shape.ResponsesRequest
    ) -> Reply:
        if self.background is None or self._store is None:
            raise InvalidRequest(
                "Background responses are not available on this gateway (it runs without "
                "its task engine). Send the request without 'background'.",
                param="background",
                code="unsupported_parameter",
            )
        plan = await self._plan(call, body, request)
        # What would refuse the call when it runs refuses it now, where the client sees it.
        self._kit.pipeline.check(call, self._operation(call, plan, Outcome()))
        return Reply(orjson.dumps(await self.background.submit(call, plan)))

    async def settled(
        self, call: Call, body: dict[str, Any], response_id: str, created_at: int
    ) -> dict[str, Any]:
        """Run a background response's call now, in-process, through the pipeline (which
        charges it): the response as it ended. Nothing is stored here."""
        request = shape.check_request(body)
        plan = await self._plan(call, body, request, response_id, created_at)
        outcome = Outcome()
        await self._kit.pipeline.run(call, self._operation(call, plan, outcome))
        response = outcome.ended()
        if response is None:  # (a complete answer always tells its response)
            raise UpstreamError("The upstream's answer told no response.")
        return response

    async def _plan(
        self,
        call: Call,
        body: dict[str, Any],
        request: shape.ResponsesRequest,
        response_id: str | None = None,
        created_at: int | None = None,
    ) -> Plan:
        key_id = call.key.row.id
        context: list[dict[str, Any]] = []
        previous = request.previous_response_id
        if previous is not None:
            found = await self._store.conversation(previous, key_id) if self._store else None
            if found is None:
                raise InvalidRequest(
                    f"Previous response with id '{previous}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            context = found
        given = body.get("input")
        references = shape.references(given)
        if references:
            stored = await self._store.find_items(key_id, references) if self._store else {}
            given = shape.resolve(given, stored)
        spelled_out = bool(context or references)
        if spelled_out:
            # The hold and the spend limit bound the prompt by what is sent, not received.
            received = call.body_bytes or len(orjson.dumps(body))
            call.body_bytes = received + len(orjson.dumps(context)) + len(orjson.dumps(given))
        return Plan(
            body=body,
            request=request,
            response_id=response_id or shape.new_id("resp_"),
            created_at=created_at or int(time.time()),
            context=context,
            given=given,
            items=shape.input_items(given),
            spelled_out=spelled_out,
        )

    def _operation(self, call: Call, plan: Plan, outcome: Outcome) -> Operation:
        output = plan.request.max_output or self._hold_output_tokens
        size = call.body_bytes or len(orjson.dumps(plan.body))

        async def attempt(attempt: Attempt) -> Charged | Streaming:
            provider = self._kit.providers.provider(attempt.route.channel.type)
            if isinstance(provider, ResponsesProvider) and provider.serves_responses(
                attempt.route.endpoint
            ):
                return await self._native(attempt, provider, plan, outcome)
            return await self._translated(attempt, plan, outcome)

        return Operation(
            plan.request.model,
            lambda quote: quote.estimate(size, output),
            attempt,
            plan.request.stream,
        )

    # -- a channel that serves the Responses API ------------------------------------------

    async def _native(
        self, attempt: Attempt, provider: ResponsesProvider, plan: Plan, outcome: Outcome
    ) -> Charged | Streaming:
        route, kit, model = attempt.route, self._kit, plan.request.model
        sent = plan.upstream_body()
        if route.body_overrides:
            sent = {**sent, **route.body_overrides}
        upstream = provider.responses_request(route.endpoint, sent, route.upstream_model)
        response = await kit.upstream.send(provider, upstream, route)
        items = plan.all_items
        prompt = Lazy(
            lambda: kit.tokens.count_prompt(model, shape.prompt_text(plan.body, items), len(items))
        )
        if plan.request.stream:
            source = NativeStream(
                response,
                self._tally(attempt, plan, prompt),
                attempt,
                prompt,
                plan.response_object(),
                plan.patch,
                plan.request.max_output,
            )
            outcome.stream = source
            return await kit.upstream.open(source, route)
        payload = await kit.upstream.read(attempt.call, response)
        return self._native_answer(attempt, payload, plan, prompt, outcome)

    def _tally(self, attempt: Attempt, plan: Plan, prompt: Lazy) -> OutputTally:
        spend = None
        if attempt.spend_limit is not None:
            bound = attempt.call.body_bytes or prompt()
            spend = SpendLimit(attempt.quote, attempt.spend_limit, bound, prompt)
        counter = self._kit.tokens.counter(plan.request.model)
        return OutputTally(counter, output_cap(plan.request.max_output), spend)

    def _native_answer(
        self, attempt: Attempt, payload: bytes, plan: Plan, prompt: Lazy, outcome: Outcome
    ) -> Charged:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("The upstream returned a response that is not JSON.") from exc
        if not isinstance(data, dict) or not isinstance(data.get("output"), list):
            raise UpstreamError("The upstream returned a response without 'output'.")
        text = "".join(
            shape.output_item_text(item) for item in data["output"] if isinstance(item, dict)
        )
        model = plan.request.model
        counts = Counts(
            prompt=prompt,
            completion=lambda: self._kit.tokens.count(model, text),
            completion_bytes=utf8_length(text),
            output_cap=plan.request.max_output,
        )
        reported = shape.chat_usage(data.get("usage"))
        usage = trusted_usage(reported, counts, attempt.route.channel_id)
        if usage.counted_locally:
            counted = usage_object(usage.prompt_tokens, usage.completion_tokens, 0)
            data["usage"] = shape.responses_usage(counted)
        data.update(plan.patch)
        outcome.response = data
        served = data.get("model")
        return Charged(
            Reply(orjson.dumps(data)),
            attempt.quote.cost(usage),
            usage,
            served if isinstance(served, str) else None,
        )

    # -- every other channel: translated to chat -------------------------------------------

    async def _translated(
        self, attempt: Attempt, plan: Plan, outcome: Outcome
    ) -> Charged | Streaming:
        body = plan.chat_body()
        result = await self._chat.attempt(attempt, body, check_chat_request(body))
        if isinstance(result, Charged):
            response = responses_chat.from_chat(
                orjson.loads(result.reply.body), plan.response_object()
            )
            outcome.response = response
            return Charged(
                Reply(orjson.dumps(response)), result.cost, result.usage, result.served_model
            )
        translated = TranslatedStream(result.source, ResponseEvents(plan.response_object()))
        outcome.stream = translated
        return translated.over(result)

    # -- the store -------------------------------------------------------------------------

    async def _kept(
        self, call: Call, plan: Plan, outcome: Outcome, rest: AsyncGenerator[bytes, None]
    ) -> AsyncGenerator[bytes, None]:
        """The stream, its response stored before the event that ends it leaves."""
        try:
            async for chunk in rest:
                await self._keep(call, plan, outcome)
                yield chunk
        finally:
            await rest.aclose()

    async def _keep(self, call: Call, plan: Plan, outcome: Outcome) -> None:
        response = outcome.ended()
        if response is None or outcome.kept or not plan.request.store or self._store is None:
            return
        outcome.kept = True
        output = [item for item in response.get("output") or () if isinstance(item, dict)]
        stored = StoredResponse(
            id=plan.response_id,
            key_id=call.key.row.id,
            model=plan.request.model,
            status=str(response.get("status") or "completed"),
            response=response,
            created_ms=plan.created_at * 1000,
            previous_response_id=plan.request.previous_response_id,
        )
        try:
            await self._store.save(stored, keyed_items(plan.all_items), keyed_items(output))
        except Exception as error:  # the answer still goes out; only its record is lost
            log.warning("response %s was not stored: %s", plan.response_id, type(error).__name__)

    # -- what a key reads of its stored responses ------------------------------------------

    async def retrieve(self, call: Call, response_id: str) -> dict[str, Any]:
        return (await self._stored(call, response_id)).response

    async def delete(self, call: Call, response_id: str) -> dict[str, Any]:
        stored = await self._stored(call, response_id)
        assert self._store is not None  # (there is a stored response)
        if not await self._store.delete(response_id, call.key.row.id):
            raise _not_found(response_id)
        if stored.background and stored.status in ACTIVE and self.background is not None:
            await self.background.cancel(stored)  # it no longer runs, or charges
        return {"id": response_id, "object": "response", "deleted": True}

    async def cancel(self, call: Call, response_id: str) -> dict[str, Any]:
        stored = await self._stored(call, response_id)
        if not stored.background:
            raise InvalidRequest("Cannot cancel a synchronous response.")
        if stored.status not in ACTIVE or self.background is None:
            return stored.response  # it ended: cancelling again changes nothing
        return await self.background.cancel(stored)

    async def input_items(self, call: Call, response_id: str, query: ItemsQuery) -> dict[str, Any]:
        page = None
        if self._store is not None:
            page = await self._store.input_items(
                response_id,
                call.key.row.id,
                limit=query.limit,
                descending=query.descending,
                after=query.after,
            )
        if page is None:
            raise _not_found(response_id)
        return {
            "object": "list",
            "data": page.items,
            "first_id": page.items[0]["id"] if page.items else None,
            "last_id": page.items[-1]["id"] if page.items else None,
            "has_more": page.has_more,
        }

    async def input_tokens(self, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        """What the input would count, with OpenAI's tokenizer; nothing is charged."""
        model = body.get("model") if isinstance(body.get("model"), str) else None
        request = shape.check_request({**body, "model": model or "gpt-4o", "stream": False})
        if model is not None:
            KeyCache.authorize_model(call.key, model)
        plan = await self._plan(call, body, request)
        items = plan.all_items
        text = shape.prompt_text(body, items)
        count = self._kit.tokens.count_prompt(request.model, text, len(items))
        return {"object": "response.input_tokens", "input_tokens": count}

    async def _stored(self, call: Call, response_id: str) -> StoredResponse:
        stored = await self._store.get(response_id, call.key.row.id) if self._store else None
        if stored is None:
            raise _not_found(response_id)
        return stored


def keyed_items(items: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (shape.stored_item_id(item) or shape.item_id(str(item.get("type"))), item) for item in items
    ]


def _not_found(response_id: str) -> NotFound:
    return NotFound(NOT_STORED.format(response_id))
