"""openai SDK -> gateway -> Azure OpenAI deployments, for the operations beyond chat."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from support import openapi
from support.constants import CLIENT_TIMEOUT_S
from support.fake_azure import FakeAzure
from support.gateway import Gateway

DEPLOYMENTS = {
    "embed-prod": "text-embedding-3-small",
    "instruct-prod": "gpt-3.5-turbo-instruct",
    "image-prod": "dall-e-3",
    "voice-prod": "tts-1",
    "whisper-prod": "whisper-1",
}


@pytest.fixture(scope="module")
def azure_ops(gateway: Gateway) -> Iterator[FakeAzure]:
    with FakeAzure() as server:
        server.deployments.update(DEPLOYMENTS)
        channel = gateway.add_channel(
            name="azure-ops",
            type="azure",
            base_url=server.url,
            api_key=server.api_key,
            models=list(DEPLOYMENTS.values()),
            model_mapping={model: name for name, model in DEPLOYMENTS.items()},
            group="azure-ops",
            options={"api_version": "2024-10-21"},
        )
        gateway.cli("price", "set", "gpt-3.5-turbo-instruct", "--input", "1.5", "--output", "2")
        yield server
        gateway.admin("DELETE", f"/admin/channels/{channel['id']}")


@pytest.fixture
def client(gateway: Gateway, make_key: Any, azure_ops: FakeAzure) -> openai.OpenAI:
    azure_ops.reset()
    return openai.OpenAI(
        base_url=gateway.base_url,
        api_key=make_key(group="azure-ops"),
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )


def _sent(azure: FakeAzure, deployment: str, operation: str) -> Any:
    sent = azure.received[-1]
    assert sent.path == f"/openai/deployments/{deployment}/{operation}"
    assert sent.query["api-version"] == "2024-10-21"
    assert sent.headers["api-key"] == azure.api_key
    assert "authorization" not in sent.headers
    return sent


def test_embeddings_on_an_azure_deployment(client: openai.OpenAI, azure_ops: FakeAzure) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    openapi.validate_response(
        "POST", "/v1/embeddings", 200, result.model_dump(mode="json", exclude_unset=True)
    )
    assert len(result.data) == 2 and result.usage.prompt_tokens == 3
    _sent(azure_ops, "embed-prod", "embeddings")


def test_completions_on_an_azure_deployment(client: openai.OpenAI, azure_ops: FakeAzure) -> None:
    result = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
    openapi.validate_response(
        "POST", "/v1/completions", 200, result.model_dump(mode="json", exclude_unset=True)
    )
    assert result.choices[0].text
    _sent(azure_ops, "instruct-prod", "completions")
    chunks = list(
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True)
    )
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)


def test_images_on_an_azure_deployment(client: openai.OpenAI, azure_ops: FakeAzure) -> None:
    result = client.images.generate(model="dall-e-3", prompt="a red bicycle", size="1024x1024")
    openapi.validate_response(
        "POST", "/v1/images/generations", 200, result.model_dump(mode="json", exclude_unset=True)
    )
    assert result.data and (result.data[0].url or result.data[0].b64_json)
    _sent(azure_ops, "image-prod", "images/generations")


def test_speech_on_an_azure_deployment(client: openai.OpenAI, azure_ops: FakeAzure) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello from Azure."
    ) as response:
        audio = response.read()
    assert len(audio) > 0
    _sent(azure_ops, "voice-prod", "audio/speech")


def test_transcription_on_an_azure_deployment(client: openai.OpenAI, azure_ops: FakeAzure) -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x00\x00" * 8000 * 3)
    upload = ("note.wav", buffer.getvalue(), "audio/wav")
    result = client.audio.transcriptions.create(model="whisper-1", file=upload)
    assert result.text == "Hello from the fake transcriber."
    sent = _sent(azure_ops, "whisper-prod", "audio/transcriptions")
    assert sent.headers["content-type"].startswith("multipart/form-data")
