"""Which dialect speaks a family's tasks on a channel of a given type."""

from __future__ import annotations

from omnirelay.providers.tasks.base import TaskDialect
from omnirelay.providers.tasks.kling import Kling
from omnirelay.providers.tasks.midjourney import MidjourneyProxy
from omnirelay.providers.tasks.openai_videos import OpenAIVideos
from omnirelay.providers.tasks.picwish import PicWish
from omnirelay.providers.tasks.suno import SunoRelay
from omnirelay.providers.tasks.tripo import Tripo

OPENAI_VIDEO = "openai.video"
MIDJOURNEY = "midjourney"
SUNO = "suno"
IMAGE_TASKS = "task.pic"
DOCUMENTS = "task.doc"
MODELS_3D = "task.3d"
KLING_VIDEO = "kling.video"
TASK_CHANNEL_TYPES = (MIDJOURNEY, SUNO, "picwish", "embedded", "tripo", "kling")
"""Channel types that serve tasks only (each upstream speaks its family's API)."""


class TaskDialects:
    def __init__(self) -> None:
        self._dialects: dict[tuple[str, str], TaskDialect] = {
            (OPENAI_VIDEO, "openai"): OpenAIVideos(),
            (MIDJOURNEY, MIDJOURNEY): MidjourneyProxy(),
            (SUNO, SUNO): SunoRelay(),
            (IMAGE_TASKS, "picwish"): PicWish(),
            (MODELS_3D, "tripo"): Tripo(),
            (KLING_VIDEO, "kling"): Kling(),
        }

    def register(self, family: str, channel_type: str, dialect: TaskDialect) -> None:
        self._dialects[(family, channel_type)] = dialect

    def get(self, family: str, channel_type: str) -> TaskDialect | None:
        return self._dialects.get((family, channel_type))

    def of_family(self, family: str) -> TaskDialect:
        """A dialect of the family: they agree on what a request may cost (its hold)."""
        return next(dialect for (name, _), dialect in self._dialects.items() if name == family)
