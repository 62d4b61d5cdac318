"""A task's request as its row keeps it: what the upstream was asked, without secrets.

The row's ``request`` is ``{"params": ..., "source": ..., "stored": ...}``: ``params`` are
the fields a dialect sends (an inline reference image left out), ``source`` the public id
of the task this one works on (a remix's video), ``stored`` what the family shows back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnirelay.providers.tasks.base import Submission
from omnirelay.store.tasks import TaskRow


def request_of(
    params: Mapping[str, Any], stored: Mapping[str, Any], source: str | None = None
) -> dict[str, Any]:
    return {"params": dict(params), "stored": dict(stored), "source": source}


def submission_of(task: TaskRow, source_upstream_id: str | None = None) -> Submission:
    """The submission a task was made from, as a dialect reads it again (to bill it, or
    to find it upstream)."""
    params = task.request.get("params")
    return Submission(
        task.action, params if isinstance(params, dict) else {}, None, source_upstream_id
    )
