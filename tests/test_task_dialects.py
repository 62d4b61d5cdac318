"""The Midjourney and Suno dialects read upstream answers as data: every field checked,
refusals told apart from answers that prove nothing, garbage never taken for a result."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from omnirelay.providers.base import Endpoint
from omnirelay.providers.tasks.base import (
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Submission,
    SubmitRefusal,
)
from omnirelay.providers.tasks.midjourney import (
    MidjourneyFailed,
    MidjourneyProxy,
    MidjourneyQueueFull,
    MidjourneyRefused,
    task_status,
)
from omnirelay.providers.tasks.suno import SunoRefused, SunoRelay
from omnirelay.providers.tasks.suno import task_status as suno_status
from omnirelay.wire.errors import (
    UpstreamClientError,
    UpstreamError,
    UpstreamRejectedCredentials,
    UpstreamUnavailable,
)

MJ = MidjourneyProxy()
SUNO = SunoRelay()
ENDPOINT = Endpoint(base_url="https://mj.example/", api_key="mj-secret-1234")


def _said(**body: Any) -> bytes:
    return orjson.dumps(body)


def test_midjourney_submit_codes() -> None:
    accepted = MJ.submit_response(_said(code=1, description="提交成功", result="1320098173412546"))
    assert (accepted.state, accepted.upstream_id, accepted.upstream_status) == (
        QUEUED, "1320098173412546", "SUBMITTED"
    )  # fmt: skip
    assert accepted.outputs == {"code": 1, "description": "提交成功"}
    numeric = MJ.submit_response(_said(code=22, description="排队中", result=1320098173412546,
                                       properties={"numberOfQueues": 3}))  # fmt: skip
    assert numeric.upstream_id == "1320098173412546"
    assert numeric.outputs["numberOfQueues"] == 3
    exists = {"status": "SUCCESS", "imageUrl": "https://x"}
    done = MJ.submit_response(
        _said(code=21, description="任务已存在", result="7", properties=exists)
    )
    assert (done.state, done.progress) == (SUCCEEDED, 100)
    modal = MJ.submit_response(_said(code=21, description="窗口等待", result="8",
                                     properties={"status": "MODAL"}))  # fmt: skip
    assert (modal.state, modal.upstream_status) == (RUNNING, "MODAL")

    cases: list[tuple[int, type[Exception], int]] = [
        (24, MidjourneyRefused, 400),
        (4, MidjourneyRefused, 400),
        (3, MidjourneyRefused, 404),
        (25, MidjourneyRefused, 400),
        (23, MidjourneyQueueFull, 503),
        (9, MidjourneyFailed, 502),
    ]
    for code, kind, status in cases:
        with pytest.raises(kind) as refused:
            MJ.submit_response(_said(code=code, description="可能包含敏感词",
                                     properties={"bannedWord": "x", "secret": "no"}))  # fmt: skip
        error = refused.value
        assert isinstance(error, SubmitRefusal) and isinstance(
            error, UpstreamError | UpstreamClientError
        )
        assert error.status == status
        body = error.body()
        assert (body["code"], body["description"], body["result"]) == (code, "可能包含敏感词", None)
        assert body["properties"] == {"bannedWord": "x"}, "only known properties are relayed"
        assert body["error"]["message"]
        copied = copy.copy(error)  # the attempt loop copies the last failure
        assert copied.body()["code"] == code
    assert issubclass(MidjourneyRefused, UpstreamClientError)
    assert issubclass(MidjourneyQueueFull, UpstreamUnavailable)


@pytest.mark.parametrize(
    "payload",
    [
        b"<html>",
        b"[]",
        _said(description="no code"),
        _said(code=True, result="1"),
        _said(code=1, description="ok"),
        _said(code=1, result=None),
        _said(code=1, result="x" * 200),
        _said(code=1, result=True),
    ],
)
def test_a_midjourney_answer_that_proves_nothing_is_not_a_refusal(payload: bytes) -> None:
    with pytest.raises(UpstreamError) as failed:
        MJ.submit_response(payload)
    assert not isinstance(failed.value, SubmitRefusal), "the submit may have been made"


def test_a_midjourney_task_read_as_data() -> None:
    task = {
        "id": 17, "action": "IMAGINE", "status": "IN_PROGRESS", "progress": "65.5%",
        "imageUrl": "https://cdn.example/preview.webp", "submitTime": 1_700_000_000_123,
    }  # fmt: skip
    running = task_status(task)
    assert (running.state, running.progress, running.upstream_id) == (RUNNING, 65, "17")
    assert running.created_at == 1_700_000_000 and running.outputs == {}
    readings = (("100%", 100), ("999%", 100), ("1000%", 0), (42, 42), (-3, 0), ("soon", 0),
                (None, 0), (True, 0))  # fmt: skip
    for progress, read in readings:
        assert task_status({**task, "progress": progress}).progress == read
    assert task_status({**task, "status": "SOMETHING_NEW"}).state == RUNNING
    assert task_status({**task, "status": "NOT_START"}).state == QUEUED

    buttons = [
        {"customId": "MJ::JOB::upsample::1::h", "emoji": "", "label": "U1", "type": 2, "style": 2},
        {"customId": "x" * 300, "label": "too long"},
        {"label": "no id"},
        "not a button",
        {"customId": "MJ::JOB::reroll::0::h::SOLO", "emoji": 5, "label": None, "type": "2"},
    ] + [{"customId": f"MJ::extra::{n}"} for n in range(40)]
    properties = {"finalPrompt": "a cat", "discordInstanceId": "99"}
    done = task_status(
        {
            **task,
            "status": "SUCCESS",
            "buttons": buttons,
            "promptEn": "a cat",
            "properties": properties,
        }
    )
    assert done.state == SUCCEEDED and done.progress == 100
    assert done.files == {"image": "https://cdn.example/preview.webp"}
    kept = done.outputs["buttons"]
    assert kept[0]["customId"] == "MJ::JOB::upsample::1::h"
    assert kept[1] == {"customId": "MJ::JOB::reroll::0::h::SOLO", "emoji": "", "label": "",
                       "type": 0, "style": 0}  # fmt: skip
    assert len(kept) == 32 - 3, "at most 32 buttons are read, and the broken ones dropped"
    assert done.outputs["properties"] == {"finalPrompt": "a cat"}

    no_image = task_status({**task, "status": "SUCCESS", "imageUrl": "file:///etc/passwd"})
    assert no_image.state == RUNNING and no_image.files == {}, "no image: not an end"
    shortened = task_status({**task, "status": "SUCCESS", "action": "SHORTEN", "imageUrl": ""})
    assert shortened.state == SUCCEEDED
    failed = task_status({**task, "status": "FAILURE",
                          "failReason": "banned at https://internal.host:9000/x"})  # fmt: skip
    assert failed.state == FAILED and "internal.host" not in failed.error["message"]  # type: ignore[index]
    broken_tasks: list[Any] = [{"id": None}, {"id": True}, {"id": ""}, {"id": "x" * 200}, []]
    for broken in broken_tasks:
        with pytest.raises(UpstreamError):
            task_status(broken)


def test_midjourney_polls_in_batches_and_keeps_only_what_it_asked() -> None:
    assert MJ.max_batch == 50
    request = MJ.poll_request(ENDPOINT, ["1", "2"])
    assert request.url == "https://mj.example/mj/task/list-by-condition"
    assert request.headers["mj-api-secret"] == "mj-secret-1234"
    assert "Authorization" not in request.headers
    assert orjson.loads(request.body) == {"ids": ["1", "2"]}
    answer = orjson.dumps([{"id": "1", "status": "SUBMITTED"}, {"id": "3", "status": "SUCCESS"},
                           "junk", {"status": "SUCCESS"}])  # fmt: skip
    assert set(MJ.poll_response(answer, ["1", "2"])) == {"1"}
    with pytest.raises(UpstreamError):
        MJ.poll_response(b'{"ids": []}', ["1"])
    assert isinstance(MJ.error(403, b"", None), UpstreamRejectedCredentials)
    not_found = MJ.error(404, _said(code=3, description="关联任务不存在或已失效"), None)
    assert isinstance(not_found, UpstreamClientError) and "关联任务" in not_found.message


def test_midjourney_requests_send_only_the_upstreams_fields() -> None:
    fields = {
        "prompt": "a cat",
        "botType": "NIJI_JOURNEY",
        "base64Array": ["data:image/png;base64,AA=="],
    }
    imagine = Submission("imagine", {"submit": "imagine", **fields})
    sent = orjson.loads(MJ.submit_request(ENDPOINT, imagine, "midjourney").body)
    assert sent == fields
    action = Submission("upscale", {"submit": "action", "customId": "MJ::JOB::upsample::1::h",
                                    "prompt": "a cat"}, None, "1320")  # fmt: skip
    request = MJ.submit_request(ENDPOINT, action, "midjourney")
    assert request.url.endswith("/mj/submit/action")
    assert orjson.loads(request.body) == {"customId": "MJ::JOB::upsample::1::h", "taskId": "1320"}
    simple = Submission("upscale", {"submit": "simple-change", "change": "U2"}, None, "1320")
    assert orjson.loads(MJ.submit_request(ENDPOINT, simple, "m").body) == {"content": "1320 U2"}
    swap = Submission(
        "swap_face", {"submit": "swap_face", "sourceBase64": "s", "targetBase64": "t"}
    )
    assert MJ.submit_request(ENDPOINT, swap, "m").url.endswith("/mj/insight-face/swap")
    assert MJ.hold_units(action).variant == "upscale"


def _clip(n: int, status: str = "complete", **extra: Any) -> dict[str, Any]:
    base = "https://cdn.example"
    metadata = {"tags": "pop", "duration": 118.4, "error_message": None}
    urls = {"audio_url": f"{base}/{n}.mp3", "image_url": f"{base}/{n}.jpeg", "video_url": ""}
    return {"id": f"clip-{n}", "title": "Sea", "status": status, **urls, "metadata": metadata,
            **extra}  # fmt: skip


def test_suno_music_ends_read_per_clip() -> None:
    task = {"task_id": "t1", "action": "MUSIC", "status": "SUCCESS", "data": [_clip(0), _clip(1)]}
    done = suno_status(task)
    assert done.state == SUCCEEDED and "fail_reason" not in done.outputs
    assert done.files == {"clip0-audio": "https://cdn.example/0.mp3",
                          "clip0-image": "https://cdn.example/0.jpeg",
                          "clip1-audio": "https://cdn.example/1.mp3",
                          "clip1-image": "https://cdn.example/1.jpeg"}  # fmt: skip
    submission = Submission("music", {})
    assert SUNO.hold_units(submission).quantity == 2
    assert SUNO.charge_units(submission, done).quantity == 2

    broken: dict[str, Any] = _clip(1, "error", audio_url="")
    broken["metadata"]["error_message"] = "Unable to generate audio."
    partial = suno_status({**task, "status": "FAILURE", "data": [_clip(0), broken]})
    assert partial.state == SUCCEEDED, "the relay's FAILURE with one clip made"
    assert [c["status"] for c in partial.outputs["clips"]] == ["complete", "error"]
    assert partial.outputs["fail_reason"] == "Unable to generate audio."
    assert set(partial.files) == {"clip0-audio", "clip0-image"}
    assert SUNO.charge_units(submission, partial).quantity == 1

    silent = suno_status({**task, "data": [_clip(0, audio_url=""), broken]})
    assert silent.state == FAILED, "a clip 'complete' without audio is nothing to deliver"
    none = suno_status({**task, "status": "FAILURE", "data": [broken, broken]})
    assert none.state == FAILED
    assert none.error == {"code": "suno_failure", "message": "Unable to generate audio."}
    assert suno_status({**task, "status": "UNKNOWN", "data": []}).state == FAILED
    assert suno_status({**task, "status": "IN_PROGRESS", "progress": "40%"}).progress == 40
    assert suno_status({**task, "status": "STREAMING?"}).state == RUNNING


def test_suno_lyrics_submits_and_refusals() -> None:
    lyrics = suno_status({"task_id": "t2", "action": "LYRICS", "status": "SUCCESS",
                          "data": {"id": "t2", "title": "Dance", "text": "la la"}})  # fmt: skip
    assert lyrics.state == SUCCEEDED and lyrics.outputs["lyrics"]["text"] == "la la"
    empty = suno_status({"task_id": "t2", "action": "LYRICS", "status": "SUCCESS", "data": {}})
    assert empty.state == FAILED
    accepted = SUNO.submit_response(_said(code="success", message="", data="uuid-1"))
    assert (accepted.state, accepted.upstream_id) == (QUEUED, "uuid-1")
    with pytest.raises(SunoRefused) as refused:
        SUNO.submit_response(_said(code="invalid_request", message="prompt is empty", data=None))
    body = refused.value.body()
    assert (body["code"], body["message"], body["data"]) == (
        "invalid_request",
        "prompt is empty",
        None,
    )
    for payload in (b"nope", _said(code="success", data=None), _said(code="success", data=5)):
        with pytest.raises(UpstreamError) as failed:
            SUNO.submit_response(payload)
        assert not isinstance(failed.value, SubmitRefusal)
    continuation = Submission("music", {"prompt": "x", "continue_clip_id": "c", "continue_at": 3},
                              None, "up-1")  # fmt: skip
    request = SUNO.submit_request(ENDPOINT, continuation, "suno")
    assert request.url == "https://mj.example/suno/submit/music"
    assert request.headers["Authorization"] == "Bearer mj-secret-1234"
    assert orjson.loads(request.body) == {"prompt": "x", "continue_clip_id": "c",
                                          "continue_at": 3, "task_id": "up-1"}  # fmt: skip
    answer = orjson.dumps({"code": "success", "data": [{"task_id": "a", "status": "QUEUED"},
                                                       {"task_id": "b"}, 7]})  # fmt: skip
    assert set(SUNO.poll_response(answer, ["a", "b"])) == {"a", "b"}
    assert SUNO.cancel_request is not None  # (the relay has neither a list nor a cancel)
    assert SUNO.find_response(b"", continuation, "suno", 0) == []
