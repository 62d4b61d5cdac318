"""Unit tests of omnirelay.wire: SSE framing, the chat shape, usage, tokens and errors."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from omnirelay.wire import tokens
from omnirelay.wire.chat import (
    complete_response,
    complete_usage,
    generated_text,
    message_count,
    prompt_text,
    response_text,
    usage_object,
)
from omnirelay.wire.errors import (
    Conflict,
    GatewayError,
    InsufficientQuota,
    InvalidAPIKey,
    InvalidJSON,
    InvalidRequest,
    InvalidType,
    KeyDisabled,
    KeyExpired,
    MissingField,
    ModelNotAllowed,
    ModelNotFound,
    ModelNotPriced,
    NotFound,
    PermissionDenied,
    RequestTooLarge,
    UpstreamClientError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    redact,
)
from omnirelay.wire.sse import DONE, encode, event_data, iter_events
from omnirelay.wire.tokens import TokenCounter, encoding_name
from omnirelay.wire.usage import Usage

# --------------------------------------------------------------------------- SSE


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _from(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _events(data: bytes, size: int) -> list[bytes]:
    return [event async for event in iter_events(_chunks(data, size))]


STREAM_LF = (
    b'data: {"id":"c1","choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b": ping\n\n"
    b'data: {"id":"c1","choices":[{"delta":{"content":"lo"}}]}\n\n'
    b"data: [DONE]\n\n"
)
EXPECTED_LF = [
    b'data: {"id":"c1","choices":[{"delta":{"content":"Hel"}}]}',
    b": ping",
    b'data: {"id":"c1","choices":[{"delta":{"content":"lo"}}]}',
    b"data: [DONE]",
]


async def test_iter_events_whole_body_in_one_chunk() -> None:
    assert await _events(STREAM_LF, len(STREAM_LF)) == EXPECTED_LF


async def test_iter_events_at_every_chunk_size_including_one_byte() -> None:
    for size in range(1, len(STREAM_LF) + 1):
        assert await _events(STREAM_LF, size) == EXPECTED_LF, f"chunk size {size}"


async def test_iter_events_split_at_every_single_offset() -> None:
    for cut in range(1, len(STREAM_LF)):
        chunks = [STREAM_LF[:cut], STREAM_LF[cut:]]
        got = [event async for event in iter_events(_from(chunks))]
        assert got == EXPECTED_LF, f"cut at {cut}"


async def test_iter_events_crlf_framing_in_whole_chunks() -> None:
    data = STREAM_LF.replace(b"\n", b"\r\n")
    assert await _events(data, len(data)) == EXPECTED_LF


async def test_iter_events_crlf_framing_with_chunks_on_event_boundaries() -> None:
    chunks = [event.replace(b"\n", b"\r\n") + b"\r\n\r\n" for event in EXPECTED_LF]
    assert [event async for event in iter_events(_from(chunks))] == EXPECTED_LF


async def test_iter_events_crlf_framing_one_byte_at_a_time() -> None:
    data = STREAM_LF.replace(b"\n", b"\r\n")
    assert await _events(data, 1) == EXPECTED_LF


async def test_iter_events_multi_line_data_event() -> None:
    data = b'event: message\ndata: {"a":\ndata: 1}\n\ndata: [DONE]\n\n'
    for size in (1, 2, 7, len(data)):
        events = await _events(data, size)
        assert events == [b'event: message\ndata: {"a":\ndata: 1}', b"data: [DONE]"]
        assert event_data(events[0]) == b'{"a":\n1}'


async def test_iter_events_trailing_event_without_blank_line() -> None:
    assert await _events(b"data: 1\n\ndata: 2", 3) == [b"data: 1", b"data: 2"]
    assert await _events(b"data: 1\n\ndata: 2\n", 1) == [b"data: 1", b"data: 2"]


async def test_iter_events_ignores_extra_blank_lines_and_empty_input() -> None:
    assert await _events(b"\n\n\n\ndata: x\n\n\n\n", 1) == [b"data: x"]
    assert await _events(b"", 1) == []
    assert [event async for event in iter_events(_from([b"", b"data: y", b"", b"\n\n"]))] == [
        b"data: y"
    ]


def test_event_data() -> None:
    assert event_data(b'data: {"a":1}') == b'{"a":1}'
    assert event_data(b"data:[DONE]") == DONE
    assert event_data(b"data:   spaced") == b"spaced"
    assert event_data(b": ping") is None
    assert event_data(b"event: ping") is None
    assert event_data(b"event: delta\ndata: {}") == b"{}"
    assert event_data(b"data: one\ndata: two\ndata: three") == b"one\ntwo\nthree"
    assert event_data(b"id: 7\ndata: x") == b"x"


def test_event_data_ignores_fields_after_a_single_data_line() -> None:
    assert event_data(b"data: {}\nid: 3") == b"{}"


def test_encode() -> None:
    assert encode(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert encode(DONE) == b"data: [DONE]\n\n"


async def test_encode_round_trips_through_iter_events() -> None:
    payloads = [b'{"n":1}', b'{"n":2}', DONE]
    body = b"".join(encode(payload) for payload in payloads)
    events = await _events(body, 5)
    assert [event_data(event) for event in events] == payloads


# --------------------------------------------------------------------------- chat


def test_complete_response_keeps_upstream_values_and_fills_the_rest() -> None:
    body: dict[str, Any] = {
        "id": "chatcmpl-upstream-123",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "x_vendor": {"kept": True},
        "choices": [{"message": {"content": "Hi"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2},
    }
    result = complete_response(body, "fp_gateway")
    assert result is body
    assert result == {
        "id": "chatcmpl-upstream-123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "x_vendor": {"kept": True},
        "system_fingerprint": "fp_gateway",
        "choices": [
            {
                "index": 0,
                "logprobs": None,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Hi", "refusal": None},
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 2,
            "total_tokens": 11,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    }


def test_complete_response_does_not_override_present_fields() -> None:
    body: dict[str, Any] = {
        "object": "chat.completion",
        "system_fingerprint": "fp_upstream",
        "choices": [
            {
                "index": 3,
                "finish_reason": "length",
                "logprobs": {"content": []},
                "message": {"role": "assistant", "content": None, "refusal": "no"},
            },
            "not-a-choice",
            {"message": {"content": "second", "tool_calls": []}},
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 99},
    }
    complete_response(body, "fp_gateway")
    assert body["system_fingerprint"] == "fp_upstream"
    first, junk, third = body["choices"]
    assert first == {
        "index": 3,
        "finish_reason": "length",
        "logprobs": {"content": []},
        "message": {"role": "assistant", "content": None, "refusal": "no"},
    }
    assert junk == "not-a-choice"
    assert third["index"] == 2
    assert third["message"] == {
        "content": "second",
        "tool_calls": [],
        "role": "assistant",
        "refusal": None,
    }
    assert body["usage"]["total_tokens"] == 99


def test_complete_response_replaces_null_fingerprint_and_missing_usage() -> None:
    body: dict[str, Any] = {"system_fingerprint": None, "choices": []}
    complete_response(body, "fp_x")
    assert body["system_fingerprint"] == "fp_x"
    assert body["usage"]["prompt_tokens"] == 0
    assert body["usage"]["completion_tokens"] == 0
    assert body["usage"]["total_tokens"] == 0


def test_complete_response_fills_null_finish_reason() -> None:
    body: dict[str, Any] = {"choices": [{"message": {"content": "x"}, "finish_reason": None}]}
    complete_response(body, "fp")
    assert body["choices"][0]["finish_reason"] == "stop"


def test_complete_usage() -> None:
    usage = complete_usage(
        {
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": "bad"},
            "completion_tokens_details": {"reasoning_tokens": 12, "extra": 5},
        }
    )
    assert usage == {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 12,
            "extra": 5,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    assert complete_usage(None)["total_tokens"] == 0
    assert complete_usage("nonsense")["prompt_tokens_details"] == {
        "cached_tokens": 0,
        "audio_tokens": 0,
    }


def test_complete_usage_tolerates_null_counts() -> None:
    usage = complete_usage({"prompt_tokens": 3, "completion_tokens": None, "total_tokens": 3})
    assert usage["completion_tokens"] == 0


def test_usage_object() -> None:
    usage = usage_object(10, 4, 6)
    assert usage["prompt_tokens"] == 10
    assert usage["completion_tokens"] == 4
    assert usage["total_tokens"] == 14
    assert usage["prompt_tokens_details"] == {"cached_tokens": 6, "audio_tokens": 0}
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0


def test_generated_text_over_content_and_tool_call_deltas() -> None:
    chunks: list[dict[str, Any]] = [
        {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"delta": {"content": "Hello"}}]},
        {"choices": [{"delta": {"content": " world"}}]},
        {"choices": [{"delta": {"reasoning_content": "[think]"}}]},
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "function": {"name": "get_weather", "arguments": ""}}
                        ]
                    }
                }
            ]
        },
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"c'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '":1}'}}]}}]},
        {"choices": [{"delta": {"refusal": "!"}}]},
        {"choices": [{"delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 1}},
        {"choices": ["junk", {"delta": "junk"}, {"delta": {"content": None}}]},
    ]
    assert generated_text(chunks) == 'Hello world[think]get_weather{"c":1}!'
    assert generated_text([]) == ""


def test_prompt_text_and_message_count() -> None:
    body: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": "https://x"}},
                    {"type": "text", "text": "what is it?"},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            "junk",
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    assert prompt_text(body) == (
        'Be brief.\nLook:\nwhat is it?\nf\n{}\n[{"type":"function","function":{"name":"f"}}]'
    )
    assert message_count(body) == 4
    assert prompt_text({}) == ""
    assert message_count({"messages": "x"}) == 0


def test_response_text() -> None:
    body: dict[str, Any] = {
        "choices": [
            {"message": {"role": "assistant", "content": "Sure. "}},
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"type": "function", "function": {"name": "lookup", "arguments": '{"q":2}'}}
                    ],
                }
            },
        ]
    }
    assert response_text(body) == 'Sure. lookup{"q":2}'
    assert response_text({"choices": None}) == ""


# --------------------------------------------------------------------------- usage


def test_usage_from_openai() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 64},
        }
    )
    assert usage == Usage(prompt_tokens=120, completion_tokens=30, cached_tokens=64)
    assert usage is not None
    assert usage.total_tokens == 150
    assert usage.counted_locally is False


def test_usage_from_openai_missing_or_invalid_fields() -> None:
    assert Usage.from_openai(None) is None
    assert Usage.from_openai([1, 2]) is None
    assert Usage.from_openai("usage") is None
    assert Usage.from_openai({}) == Usage(0, 0, 0)
    assert Usage.from_openai(
        {
            "prompt_tokens": "12",
            "completion_tokens": -5,
            "prompt_tokens_details": {"cached_tokens": None},
        }
    ) == Usage(0, 0, 0)
    assert Usage.from_openai(
        {"prompt_tokens": 7, "completion_tokens": 2.5, "prompt_tokens_details": "x"}
    ) == Usage(7, 0, 0)
    assert Usage.from_openai({"prompt_tokens": None, "completion_tokens": 3}) == Usage(0, 3, 0)


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4o-2024-08-06",
        "GPT-4o",
        "openai/gpt-4o",
        "gpt-4.1",
        "gpt-4.1-nano",
        "o1",
        "o3",
        "o3-mini",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "chatgpt-4o-latest",
    ],
)
def test_encoding_name_o200k(model: str) -> None:
    assert encoding_name(model) == "o200k_base"


@pytest.mark.parametrize(
    "model", ["gpt-3.5-turbo", "gpt-4", "gpt-4-turbo", "gpt-4-0613", "claude-3-5-sonnet", ""]
)
def test_encoding_name_cl100k(model: str) -> None:
    assert encoding_name(model) == "cl100k_base"


def test_token_counter_counts_known_strings() -> None:
    counter = TokenCounter()
    # Counts computed once with bpe_openai.get_encoding(...).encode(...).
    assert counter.count("gpt-4o", "Hello, world!") == 4
    assert counter.count("gpt-4o", "Привет, как дела?") == 6
    assert counter.count("gpt-4", "Привет, как дела?") == 8
    assert counter.count("gpt-3.5-turbo", "The quick brown fox jumps over the lazy dog.") == 10
    assert counter.count("gpt-4o", "") == 0
    assert counter.count_prompt("gpt-4o", "Hello, world!", messages=2) == 4 + 3 * 2 + 3


def test_token_counter_loads_encodings_lazily_and_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []
    real_load = tokens._load

    def spy(name: str) -> tokens.Encoding:
        loaded.append(name)
        return real_load(name)

    monkeypatch.setattr(tokens, "_load", spy)
    counter = TokenCounter()
    assert loaded == []
    assert counter.count("gpt-4o", "") == 0
    assert loaded == []
    assert counter.count("gpt-4o", "Hello, world!") == 4
    assert loaded == ["o200k_base"]
    assert counter.count("gpt-5", "Hello, world!") == 4
    assert loaded == ["o200k_base"]
    assert counter.count("gpt-4", "Hello, world!") == 4
    assert loaded == ["o200k_base", "cl100k_base"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("connect to https://internal.example:8443/v1/chat failed", "internal.example"),
        ("see http://10.1.2.3/health", "10.1.2.3"),
        ("upstream 10.0.0.12:8080 refused the connection", "10.0.0.12"),
        ("host 192.168.1.1 is down", "192.168.1.1"),
        ("[fd00::1]:8443 unreachable", "fd00::1"),
        ("sent Authorization: Bearer xyz", "xyz"),
        ("sent bearer abc.def-ghi", "abc.def-ghi"),
        ("Incorrect API key provided: sk-proj-abc123XYZ456.", "abc123XYZ456"),
        ("Incorrect API key provided: sk-abc***wxyz", "abc***wxyz"),
        ("token a8F3kLm92QzXv71PbN0cRt5YwE4uJh6D leaked", "a8F3kLm92QzXv71PbN0cRt5YwE4uJh6D"),
    ],
)
def test_redact_removes_secrets_and_addresses(message: str, secret: str) -> None:
    redacted = redact(message)
    assert secret not in redacted
    assert "[redacted]" in redacted


def test_redact_exact_output() -> None:
    assert (
        redact("Upstream at http://10.0.0.5:9000/v1 said: key sk-live-12345678 invalid")
        == "Upstream at [redacted] said: key [redacted] invalid"
    )
    assert redact("upstream 10.0.0.12:8080 refused") == "upstream [redacted] refused"
    assert redact("Authorization: Bearer xyz") == "Authorization: [redacted]"


@pytest.mark.parametrize(
    "message",
    [
        "The model gpt-4o-2024-08-06 does not exist or you do not have access to it.",
        "Rate limit reached for gpt-4o-mini in organization on tokens per min.",
        "This model's maximum context length is 128000 tokens.",
        "Invalid value for max_completion_tokens: expected an integer.",
        "claude-3-5-sonnet-20241022 and gemini-1.5-pro-002 are unavailable",
        "Please check your request and try again",
        "The server had an error while processing your request. Sorry about that!",
    ],
)
def test_redact_keeps_ordinary_text(message: str) -> None:
    assert redact(message) == message


@pytest.mark.parametrize(
    "message",
    [
        "Invalid type for 'messages[0].content': expected a string.",
        "Unrecognized request argument supplied: skip_special_tokens",
        "skipping the rest of the stream",
    ],
)
def test_redact_keeps_indices_and_words_starting_like_key_prefixes(message: str) -> None:
    assert redact(message) == message


@pytest.mark.parametrize(
    ("error_class", "status", "type_", "code"),
    [
        (GatewayError, 500, "server_error", "internal_error"),
        (InvalidRequest, 400, "invalid_request_error", "invalid_request"),
        (InvalidJSON, 400, "invalid_request_error", "invalid_json"),
        (MissingField, 400, "invalid_request_error", "missing_field"),
        (InvalidType, 400, "invalid_request_error", "invalid_type"),
        (RequestTooLarge, 413, "invalid_request_error", "request_too_large"),
        (InvalidAPIKey, 401, "invalid_request_error", "invalid_api_key"),
        (KeyExpired, 401, "invalid_request_error", "key_expired"),
        (KeyDisabled, 401, "invalid_request_error", "key_disabled"),
        (PermissionDenied, 403, "invalid_request_error", "permission_denied"),
        (ModelNotAllowed, 403, "invalid_request_error", "model_not_allowed"),
        (ModelNotPriced, 403, "invalid_request_error", "model_not_priced"),
        (NotFound, 404, "invalid_request_error", "not_found"),
        (ModelNotFound, 404, "invalid_request_error", "model_not_found"),
        (Conflict, 409, "invalid_request_error", "conflict"),
        (InsufficientQuota, 429, "insufficient_quota", "insufficient_quota"),
        (UpstreamError, 502, "upstream_error", "upstream_error"),
        (UpstreamUnavailable, 503, "upstream_error", "upstream_unavailable"),
        (UpstreamTimeout, 504, "upstream_error", "upstream_timeout"),
    ],
)
def test_gateway_error_classes(
    error_class: type[GatewayError], status: int, type_: str, code: str
) -> None:
    error = error_class("Something went wrong.", param="model")
    assert isinstance(error, GatewayError)
    assert error.status == status
    assert error.type == type_
    assert error.code == code
    assert error.retry_after is None
    assert str(error) == "Something went wrong."
    assert error.body() == {
        "error": {"message": "Something went wrong.", "type": type_, "param": "model", "code": code}
    }


def test_gateway_error_code_override_is_per_instance() -> None:
    error = InvalidRequest("Bad date.", param="start_date", code="missing_field", retry_after=2.5)
    assert error.code == "missing_field"
    assert error.retry_after == 2.5
    assert error.body()["error"]["code"] == "missing_field"
    assert InvalidRequest("x").code == "invalid_request"
    assert InvalidRequest("x").body()["error"]["param"] is None


def test_upstream_client_error_relays_upstream_fields() -> None:
    error = UpstreamClientError(
        422,
        "Unprocessable.",
        error={"type": "invalid_request_error", "param": "temperature", "code": "out_of_range"},
    )
    assert error.status == 422
    assert UpstreamClientError.status == 500
    assert error.body() == {
        "error": {
            "message": "Unprocessable.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "out_of_range",
        }
    }
    custom = UpstreamClientError(404, "Nope.", error={"type": "not_found_error"})
    assert custom.status == 404
    assert custom.body()["error"] == {
        "message": "Nope.",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    bare = UpstreamClientError(400, "Bad.")
    assert bare.status == 400
    assert bare.body() == {
        "error": {"message": "Bad.", "type": "invalid_request_error", "param": None, "code": None}
    }


def test_complete_response_is_idempotent() -> None:
    body: dict[str, Any] = {"id": "x", "choices": [{"message": {"content": "a"}}]}
    once = copy.deepcopy(complete_response(body, "fp"))
    assert complete_response(body, "other") == once


def test_special_tokens_in_a_prompt_count_as_plain_text() -> None:
    counter = TokenCounter()
    plain = counter.count("gpt-4o", "<|endoftext|> and <|endofprompt|>")
    assert plain > 2  # not the two single special tokens, and no error
    assert counter.count("gpt-4", "<|endoftext|>") > 1
