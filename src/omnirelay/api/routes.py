"""The URL map."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api import (
    admin,
    admin_audit,
    admin_batches,
    admin_deadletters,
    admin_files,
    admin_ledger,
    admin_prices,
    admin_tasks,
    admin_upstream,
    admin_usage,
    audio,
    azure,
    batches,
    billing,
    chat,
    completions,
    documents,
    embeddings,
    files,
    gemini,
    images,
    kling,
    midjourney,
    models,
    models3d,
    moderations,
    ops,
    pic,
    rerank,
    responses,
    results,
    suno,
    task_poll,
    unbuilt,
    video_generations,
    videos,
)
from omnirelay.api.console.routes import add_console_routes
from omnirelay.api.messages import count_tokens, messages
from omnirelay.gateway import image_tasks
from omnirelay.gateway import kling as gateway_kling
from omnirelay.gateway import models3d as gateway_models3d


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_post("/v1/chat/completions", chat.chat_completions)
    router.add_post("/v1/messages", messages)
    router.add_post("/v1/completions", completions.completions)
    router.add_post("/v1/embeddings", embeddings.embeddings)
    router.add_post("/v1/moderations", moderations.moderations)
    router.add_post("/v1/images/generations", images.generations)
    router.add_post("/v1/images/edits", images.edits)
    router.add_post("/v1/images/variations", images.variations)
    router.add_post("/v1/audio/speech", audio.speech)
    router.add_post("/v1/audio/transcriptions", audio.transcriptions)
    router.add_post("/v1/audio/translations", audio.translations)
    router.add_post("/v1/rerank", rerank.rerank)
    router.add_post("/v1/messages/count_tokens", count_tokens)
    router.add_post("/v1/responses", responses.create)
    router.add_post("/v1/responses/input_tokens", responses.input_tokens)
    router.add_get("/v1/responses/{id}", responses.retrieve)
    router.add_delete("/v1/responses/{id}", responses.delete)
    router.add_post("/v1/responses/{id}/cancel", responses.cancel)
    router.add_get("/v1/responses/{id}/input_items", responses.input_items)
    router.add_post("/v1/videos", videos.create)
    router.add_get("/v1/videos", videos.list_videos)
    router.add_get("/v1/videos/{video_id}", videos.retrieve)
    router.add_delete("/v1/videos/{video_id}", videos.delete)
    router.add_get("/v1/videos/{video_id}/content", videos.content)
    router.add_post("/v1/videos/{video_id}/remix", videos.remix)
    router.add_post("/mj/submit/imagine", midjourney.imagine)
    router.add_post("/mj/submit/action", midjourney.action)
    router.add_post("/mj/submit/change", midjourney.change)
    router.add_post("/mj/submit/simple-change", midjourney.simple_change)
    router.add_post("/mj/submit/blend", midjourney.blend)
    router.add_post("/mj/submit/describe", midjourney.describe)
    router.add_post("/mj/submit/modal", midjourney.modal)
    router.add_post("/mj/submit/shorten", midjourney.shorten)
    router.add_post("/mj/insight-face/swap", midjourney.swap_face)
    router.add_get("/mj/task/{id}/fetch", midjourney.fetch)
    router.add_post("/mj/task/list-by-condition", midjourney.list_by_condition)
    router.add_get("/mj/task/{id}/image-seed", midjourney.image_seed)
    router.add_post("/suno/submit/music", suno.music)
    router.add_post("/suno/submit/lyrics", suno.lyrics)
    router.add_get("/suno/fetch/{task_id}", suno.fetch_one)
    router.add_post("/suno/fetch", suno.fetch_many)
    router.add_get("/v1/results/{task_id}/{name}", results.signed_result)
    for action in image_tasks.ACTIONS:
        router.add_post(f"/task/pic/{action}", pic.submit_for(action))
    router.add_post("/task/doc/pdf-parse", documents.submit)
    for task_type in gateway_models3d.TYPES:
        router.add_post(f"/task/3d/{task_type}", models3d.submit_for(task_type))
    for action in gateway_kling.ACTIONS:
        router.add_post(f"/kling/v1/videos/{action}", kling.submit_for(action))
    router.add_get("/kling/v1/videos/{action}/{task_id}", kling.fetch)
    router.add_post("/v1/video/generations", video_generations.submit)
    router.add_get("/v1/video/generations/{task_id}", video_generations.fetch)
    for (method, path), vendor in unbuilt.PATHS.items():
        router.add_route(method, path, unbuilt.handler_for(vendor))
    router.add_get("/task/{task_id}", task_poll.fetch)
    router.add_post("/v1/files", files.upload)
    router.add_get("/v1/files", files.list_files)
    router.add_get("/v1/files/{file_id}", files.retrieve)
    router.add_delete("/v1/files/{file_id}", files.delete)
    router.add_get("/v1/files/{file_id}/content", files.content)
    router.add_post("/v1/batches", batches.create)
    router.add_get("/v1/batches", batches.list_batches)
    router.add_get("/v1/batches/{batch_id}", batches.retrieve)
    router.add_post("/v1/batches/{batch_id}/cancel", batches.cancel)
    router.add_get("/v1/models", gemini.list_models_either)
    router.add_get("/v1/models/{model:.+}", gemini.get_model_either)
    for prefix in ("/v1", ""):
        router.add_get(f"{prefix}/dashboard/billing/subscription", billing.subscription)
        router.add_get(f"{prefix}/dashboard/billing/usage", billing.usage)
    # Gemini's API: google-genai 3 speaks v1 unless told otherwise, older clients v1beta.
    for version in ("/v1beta", "/v1"):
        router.add_post(f"{version}/models/{{target:.+}}", gemini.model_method)
    router.add_get("/v1beta/models", gemini.list_models)
    router.add_get("/v1beta/models/{model:.+}", gemini.get_model)
    # Azure OpenAI: deployments, and its v1 API (OpenAI's paths under /openai).
    for path, handler in azure.DEPLOYMENT_PATHS.items():
        router.add_post(f"/openai/deployments/{{deployment}}/{path}", handler)
    router.add_post("/openai/v1/chat/completions", chat.chat_completions)
    router.add_post("/openai/v1/completions", completions.completions)
    router.add_post("/openai/v1/embeddings", embeddings.embeddings)
    router.add_post("/openai/v1/images/generations", images.generations)
    router.add_post("/openai/v1/images/edits", images.edits)
    router.add_post("/openai/v1/audio/speech", audio.speech)
    router.add_post("/openai/v1/audio/transcriptions", audio.transcriptions)
    router.add_post("/openai/v1/audio/translations", audio.translations)
    router.add_get("/openai/v1/models", models.list_models)
    router.add_get("/openai/v1/models/{model:.+}", models.get_model)

    router.add_get("/admin/channels", admin.list_channels)
    router.add_post("/admin/channels", admin.create_channel)
    router.add_get("/admin/channels/{id}", admin.get_channel)
    router.add_patch("/admin/channels/{id}", admin.update_channel)
    router.add_delete("/admin/channels/{id}", admin.delete_channel)
    router.add_post("/admin/channels/{id}/test", admin.test_channel)
    router.add_get("/admin/keys", admin.list_keys)
    router.add_post("/admin/keys", admin.create_key)
    router.add_get("/admin/keys/{id}", admin.get_key)
    router.add_get("/admin/keys/{id}/models", admin.key_models)
    router.add_patch("/admin/keys/{id}", admin.update_key)
    router.add_delete("/admin/keys/{id}", admin.delete_key)
    router.add_get("/admin/prices", admin_prices.list_prices)
    router.add_get("/admin/prices/{model:.+}", admin_prices.effective_price)
    router.add_put("/admin/prices/{model:.+}", admin_prices.set_price)
    router.add_delete("/admin/prices/{model:.+}", admin_prices.delete_price)
    router.add_get("/admin/groups", admin_prices.list_multipliers)
    router.add_put("/admin/groups/{group}/multiplier", admin_prices.set_multiplier)
    router.add_delete("/admin/groups/{group}/multiplier", admin_prices.delete_multiplier)
    router.add_get("/admin/usage", admin_usage.usage)
    router.add_get("/admin/usage/hourly", admin_usage.hourly)
    router.add_get("/admin/audit", admin_audit.audit)
    router.add_get("/admin/channel-types", admin_upstream.channel_types)
    router.add_post("/admin/upstream-models", admin_upstream.upstream_models)
    router.add_get("/admin/logs", admin.list_logs)
    router.add_get("/admin/ledger", admin_ledger.ledger)
    router.add_get("/admin/deadletters", admin_deadletters.dead_letters)
    router.add_get("/admin/tasks", admin_tasks.list_tasks)
    router.add_get("/admin/batches", admin_batches.list_batches)
    router.add_get("/admin/batches/{batch_id}", admin_batches.get_batch)
    router.add_post("/admin/batches/{batch_id}/cancel", admin_batches.cancel_batch)
    router.add_get("/admin/files/{file_id}/content", admin_files.file_content)
    router.add_get("/admin/tasks/{task_id}", admin_tasks.get_task)
    router.add_get("/admin/tasks/{task_id}/results/{name}", admin_tasks.task_result)
    router.add_post("/admin/tasks/{task_id}/cancel", admin_tasks.cancel_task)
    router.add_get("/admin/keys/{id}/webhook-secret", admin_tasks.webhook_secret)
    router.add_get("/healthz", ops.healthz)
    router.add_get("/readyz", ops.readyz)
    router.add_get("/metrics", ops.metrics)
    add_console_routes(router)
