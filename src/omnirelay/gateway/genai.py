"""Names from the OpenTelemetry GenAI semantic conventions, as metrics and traces use them."""

from __future__ import annotations

# gen_ai.operation.name of each endpoint that has one; the others keep their own name.
OPERATIONS = {
    "chat.completions": "chat",
    "messages": "chat",
    "responses": "chat",
    "gemini.generate_content": "generate_content",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "gemini.embed_content": "embeddings",
    "gemini.batch_embed_contents": "embeddings",
}
# gen_ai.provider.name (formerly gen_ai.system) of channel types with a well-known value.
PROVIDERS = {"gemini": "gcp.gemini", "azure": "azure.ai.openai"}


def operation_name(endpoint: str) -> str:
    return OPERATIONS.get(endpoint, endpoint)


def provider_name(channel_type: str) -> str:
    """The well-known provider name of a channel type, else the type itself."""
    return PROVIDERS.get(channel_type, channel_type)
