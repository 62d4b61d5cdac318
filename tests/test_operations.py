"""The OpenAI surface beyond chat, through the real gateway, with the openai SDK as client.

Each call goes through the chat pipeline (keys, routing, admission, failover, settlement,
log row) and is charged in its own unit; the charge is read back from the admin API.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import struct
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from openai.types import ModerationImageURLInputParam

from support import openapi
from support.constants import CLIENT_TIMEOUT_S, UPSTREAM_KEY
from support.fake_openai_more import PNG, FakeOpenAIMore
from support.gateway import Gateway, wait_until

# OpenAI's moderation models: free, so the shipped catalogue prices them at zero.
MODERATION_MODELS = [
    "omni-moderation-latest",
    "omni-moderation-2024-09-26",
    "text-moderation-latest",
    "text-moderation-stable",
    "text-moderation-007",
]
MODELS = ["text-embedding-3-small", *MODERATION_MODELS, "gpt-3.5-turbo-instruct",
          "dall-e-3", "dall-e-2", "gpt-image-1", "tts-1", "whisper-1", "rerank-v3.5"]  # fmt: skip


@dataclass
class Surface:
    gateway: Gateway
    fake: FakeOpenAIMore
    group: str
    channel: dict[str, Any]

    def key(self) -> tuple[str, int]:
        created = self.gateway.create_key(name="ops-" + secrets.token_hex(3), group=self.group)
        return created["key"], created["id"]

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S
        )

    def charges(self, key_id: int) -> list[dict[str, Any]]:
        def logged() -> bool:
            rows = self.gateway.admin("GET", f"/admin/logs?key_id={key_id}").json()["data"]
            return bool(rows)

        wait_until(logged, timeout=5)
        rows = self.gateway.admin("GET", f"/admin/logs?key_id={key_id}").json()["data"]
        book = self.gateway.admin("GET", f"/admin/ledger?key_id={key_id}").json()
        assert book["total_nano"] == sum(row["cost_nano"] for row in rows)
        assert not book["open_holds"]
        return list(rows)


@pytest.fixture(scope="module")
def surface(gateway: Gateway) -> Iterator[Surface]:
    fake = FakeOpenAIMore(api_key=UPSTREAM_KEY)
    fake.start()
    group = "ops-" + secrets.token_hex(4)
    channel = gateway.add_channel(name=group, base_url=fake.base_url, api_key=UPSTREAM_KEY,
                                  models=MODELS, group=group)  # fmt: skip
    gateway.cli("price", "set", "gpt-3.5-turbo-instruct", "--input", "1.5", "--output", "2")
    found = Surface(gateway, fake, group, channel)
    key, _ = found.key()

    def priced() -> bool:
        answer = httpx.post(gateway.base_url + "/moderations", json={"input": "hi"},
                            headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        return answer.status_code == 200

    wait_until(priced, timeout=5)
    yield found
    gateway.admin("DELETE", f"/admin/channels/{channel['id']}")
    fake.stop()


def _wav(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        audio.writeframes(b"\x00\x01" * int(seconds * rate))
    return buffer.getvalue()


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", exclude_unset=True)


def test_embeddings_float_and_base64_are_charged_by_tokens(surface: Surface) -> None:
    key, key_id = surface.key()
    client = surface.client(key)
    floats = client.embeddings.create(model="text-embedding-3-small", input=["a b c", "d e"])
    openapi.validate_response("POST", "/v1/embeddings", 200, _dump(floats))
    assert [len(d.embedding) for d in floats.data] == [8, 8]
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="one two three four", encoding_format="base64"
    )
    body = json.loads(raw.http_response.text)
    vector = struct.unpack("<8f", base64.b64decode(body["data"][0]["embedding"]))
    assert len(vector) == 8
    # The spec types the embedding as floats only; the base64 string decodes to them.
    body["data"][0]["embedding"] = list(vector)
    openapi.validate_response("POST", "/v1/embeddings", 200, body)
    assert surface.fake.received[-1].body["encoding_format"] == "base64"
    rows = surface.charges(key_id)
    # text-embedding-3-small: $0.02 per 1M tokens = 20 nano-dollars per token.
    assert sorted(row["prompt_tokens"] for row in rows) == [4, 5]
    assert sorted(row["cost_nano"] for row in rows) == [80, 100]
    assert {row["endpoint"] for row in rows} == {"embeddings"}


def test_embedding_dimensions_must_be_a_whole_number(surface: Surface) -> None:
    key, _ = surface.key()
    client = surface.client(key)
    sent = len(surface.fake.received)
    for wrong in (1.0, "8", True, 0, [8]):
        with pytest.raises(openai.BadRequestError) as refused:
            client.embeddings.create(
                model="text-embedding-3-small", input="a b", extra_body={"dimensions": wrong}
            )
        assert refused.value.body["param"] == "dimensions"  # type: ignore[index]
    assert len(surface.fake.received) == sent  # refused here, never sent upstream
    assert len(client.embeddings.create(model="text-embedding-3-small", input="a b",
                                        dimensions=4).data[0].embedding) == 4  # fmt: skip


def test_moderations_of_text_and_of_an_image(surface: Surface) -> None:
    key, key_id = surface.key()
    client = surface.client(key)
    text = client.moderations.create(model="omni-moderation-latest", input="I will kill it")
    openapi.validate_response("POST", "/v1/moderations", 200, _dump(text))
    assert text.results[0].flagged
    part: ModerationImageURLInputParam = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
    image = client.moderations.create(model="omni-moderation-latest", input=[part])
    openapi.validate_response("POST", "/v1/moderations", 200, _dump(image))
    assert image.results[0].category_applied_input_types.violence == ["image"]
    rows = surface.charges(key_id)
    assert sum(row["prompt_tokens"] for row in rows) > 0
    assert all(row["status"] == 200 for row in rows)


def test_moderation_on_the_shipped_catalogue_is_free(surface: Surface) -> None:
    key, key_id = surface.key()
    client = surface.client(key)
    default = client.moderations.create(input="I will kill it")  # omni-moderation-latest
    assert default.results[0].flagged
    for model in MODERATION_MODELS:
        assert not client.moderations.create(model=model, input="hello there").results[0].flagged
    rows = surface.charges(key_id)
    assert len(rows) == 1 + len(MODERATION_MODELS)
    assert all(row["status"] == 200 and row["prompt_tokens"] > 0 for row in rows)
    assert [row["cost_nano"] for row in rows] == [0] * len(rows)
    for model in MODERATION_MODELS:
        price = surface.gateway.admin("GET", f"/admin/prices/{model}").json()
        assert price["source"] == "catalogue", price
        assert (price["input_nano_per_m"], price["output_nano_per_m"]) == (0, 0)


def test_legacy_completions_plain_and_streamed(surface: Surface) -> None:
    key, key_id = surface.key()
    client = surface.client(key)
    plain = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say this is a test")
    openapi.validate_response("POST", "/v1/completions", 200, _dump(plain))
    assert plain.choices[0].text == " This is a test."
    chunks = list(
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say it", stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == " This is a test."
    assert all(c.usage is None for c in chunks), "the usage chunk leaked to the client"
    assert surface.fake.received[-1].body["stream_options"] == {"include_usage": True}
    rows = sorted(surface.charges(key_id), key=lambda row: row["stream"])
    # $1.5 per 1M in, $2 per 1M out: 1,500 and 2,000 nano-dollars per token.
    assert [(r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [(5, 5), (2, 5)]
    assert [r["cost_nano"] for r in rows] == [5 * 1500 + 5 * 2000, 2 * 1500 + 5 * 2000]


def test_images_generate_and_edit_are_charged_per_image(surface: Surface) -> None:
    key, key_id = surface.key()
    client = surface.client(key)
    made = client.images.generate(model="dall-e-3", prompt="a cat", size="1024x1024", quality="hd")
    openapi.validate_response("POST", "/v1/images/generations", 200, _dump(made))
    edited = client.images.edit(
        model="dall-e-2", image=("cat.png", PNG + b"pixels", "image/png"), prompt="a hat", n=2,
        size="512x512",
    )  # fmt: skip
    openapi.validate_response("POST", "/v1/images/edits", 200, _dump(edited))
    sent = surface.fake.received[-1].body
    assert sent["prompt"] == "a hat" and sent["image"]["data"] == PNG + b"pixels"
    rows = surface.charges(key_id)
    # dall-e-3 1024x1024/hd $0.080; dall-e-2 512x512 $0.018 each.
    assert sorted(row["cost_nano"] for row in rows) == [36_000_000, 80_000_000]


def test_image_edit_refuses_a_file_that_is_not_an_image(surface: Surface) -> None:
    key, _ = surface.key()
    with pytest.raises(openai.BadRequestError) as raised:
        surface.client(key).images.edit(
            model="dall-e-2", image=("cat.txt", b"hello", "text/plain"), prompt="x"
        )
    assert raised.value.status_code == 400
    openapi.validate_schema("ErrorResponse", raised.value.response.json())


def test_image_variation_over_multipart(surface: Surface) -> None:
    key, key_id = surface.key()
    varied = surface.client(key).images.create_variation(
        model="dall-e-2", image=("cat.png", PNG + b"x", "image/png"), size="256x256"
    )
    openapi.validate_response("POST", "/v1/images/variations", 200, _dump(varied))
    assert [row["cost_nano"] for row in surface.charges(key_id)] == [16_000_000]


def test_speech_streams_bytes_and_is_charged_by_characters(surface: Surface) -> None:
    key, key_id = surface.key()
    text = "Hello there, friend."
    with surface.client(key).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text
    ) as response:
        pieces = list(response.iter_bytes())
        assert response.headers["content-type"] == "audio/mpeg"
    assert b"".join(pieces).startswith(b"ID3")
    # tts-1: $15 per 1M characters = 15,000 nano-dollars a character.
    assert [row["cost_nano"] for row in surface.charges(key_id)] == [15_000 * len(text)]


def test_speech_as_server_sent_events(surface: Surface) -> None:
    key, _ = surface.key()
    with surface.client(key).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hi", stream_format="sse"
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    events = [json.loads(line[6:]) for line in lines]
    assert events[-1]["type"] == "speech.audio.done"
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}


def test_transcription_of_a_wav_is_charged_by_its_seconds(surface: Surface) -> None:
    key, key_id = surface.key()
    client = surface.client(key)
    audio = ("hello.wav", _wav(2.0), "audio/wav")
    result = client.audio.transcriptions.create(model="whisper-1", file=audio)
    openapi.validate_response("POST", "/v1/audio/transcriptions", 200, _dump(result))
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=audio, response_format="verbose_json"
    )
    assert verbose.duration == 2.0
    for fmt in ("text", "srt", "vtt"):
        text = client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format=fmt
        )
        assert "Hello from the fake transcriber." in str(text)
    translated = client.audio.translations.create(model="whisper-1", file=audio)
    assert translated.text
    assert surface.fake.received[-1].path == "/v1/audio/translations"
    # whisper-1: $0.0001 per second = 100,000 nano-dollars a second.
    assert [row["cost_nano"] for row in surface.charges(key_id)] == [200_000] * 6


@pytest.mark.parametrize(
    ("files", "data", "param"),
    [
        ({"file": ("notes.txt", b"hello", "text/plain")}, {"model": "whisper-1"}, "file"),
        (None, {"model": "whisper-1"}, "file"),
        (
            {"file": ("a.wav", _wav(0.1), "audio/wav")},
            {"model": "whisper-1", "response_format": "xml"},
            "response_format",
        ),
    ],
)
def test_transcription_bad_input_is_a_clear_400(
    surface: Surface, files: Any, data: dict[str, str], param: str
) -> None:
    key, _ = surface.key()
    response = httpx.post(
        surface.gateway.base_url + "/audio/transcriptions",
        headers={"Authorization": f"Bearer {key}"},
        data=data,
        files=files or {"other": ("x.bin", b"x", "application/octet-stream")},
    )
    assert response.status_code == 400, response.text
    openapi.validate_schema("ErrorResponse", response.json())
    assert response.json()["error"]["param"] == param


def test_an_upload_past_the_size_limit_is_413(surface: Surface) -> None:
    key, _ = surface.key()
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (3 * 1024 * 1024)
    response = httpx.post(
        surface.gateway.base_url + "/images/edits",
        headers={"Authorization": f"Bearer {key}"},
        data={"prompt": "x", "model": "dall-e-2"},
        files={"image": ("big.png", big, "image/png")},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_rerank_over_raw_http_is_charged_per_search(surface: Surface) -> None:
    key, key_id = surface.key()
    response = httpx.post(
        surface.gateway.base_url + "/rerank",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "rerank-v3.5", "query": "red apple",
              "documents": ["a red apple", "a blue car", "green apple"], "top_n": 2},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 2]
    assert [row["cost_nano"] for row in surface.charges(key_id)] == [2_000_000]


def test_a_failing_upstream_fails_over_and_only_the_served_call_is_charged(
    surface: Surface, gateway: Gateway
) -> None:
    backup = FakeOpenAIMore(api_key=UPSTREAM_KEY)
    backup.start()
    channel = gateway.add_channel(name=surface.group + "-b", base_url=backup.base_url,
                                  api_key=UPSTREAM_KEY, models=MODELS, group=surface.group,
                                  priority=-1)  # fmt: skip
    try:
        key, key_id = surface.key()
        wait_until(lambda: _embed(surface, key).status_code == 200, timeout=5)
        surface.fake.fail_next(500, times=1)
        before = len(backup.received)
        answer = _embed(surface, key)
        assert answer.status_code == 200
        rows = surface.charges(key_id)
        assert len(backup.received) == before + 1  # the primary failed; the backup answered
        chains = [[a["status"] for a in row["attempts"]] for row in rows]
        assert [502, 200] in chains
        assert all(row["cost_nano"] == 20 for row in rows)
    finally:
        gateway.admin("DELETE", f"/admin/channels/{channel['id']}")
        backup.stop()


def _embed(surface: Surface, key: str) -> httpx.Response:
    return httpx.post(surface.gateway.base_url + "/embeddings",
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": "text-embedding-3-small", "input": "x"})  # fmt: skip
