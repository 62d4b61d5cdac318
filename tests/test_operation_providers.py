"""The upstream requests that providers build for the operations beyond chat."""

from __future__ import annotations

import pytest

from omnirelay.providers.azure import AzureOpenAIProvider
from omnirelay.providers.base import Endpoint
from omnirelay.providers.openai import OpenAIProvider
from omnirelay.wire.errors import UpstreamError
from omnirelay.wire.uploads import Upload


def test_openai_operations_pass_the_body_through_with_the_upstream_model() -> None:
    endpoint = Endpoint("https://api.example/v1", "sk-x")
    request = OpenAIProvider().embeddings_request(endpoint, {"model": "a", "input": "x"}, "b")
    assert request.url == "https://api.example/v1/embeddings"
    assert request.body == b'{"model":"b","input":"x"}'
    assert request.headers["Authorization"] == "Bearer sk-x"


def test_azure_serves_operations_at_deployment_urls() -> None:
    endpoint = Endpoint("https://res.openai.azure.com", "az-key")
    azure = AzureOpenAIProvider()
    request = azure.embeddings_request(endpoint, {"model": "e", "input": "x"}, "emb")
    assert request.url == (
        "https://res.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21"
    )
    assert request.headers["api-key"] == "az-key"
    upload = Upload([("response_format", "json")])
    form = azure.transcription_request(endpoint, upload, "whisper", False)
    assert form.url.endswith("/deployments/whisper/audio/transcriptions?api-version=2024-10-21")
    assert "Content-Type" not in form.headers and form.form is not None
    assert form.form.value("model") == "whisper"
    with pytest.raises(UpstreamError):
        azure.moderations_request(endpoint, {"input": "x"}, "m")
