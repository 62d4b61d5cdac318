"""The task families served beside OpenAI's videos, as the engine sees them (their names,
id prefixes, log endpoints and webhook renderers), for ``server.py`` to register."""

from __future__ import annotations

from omnirelay.api import documents, kling, models3d, pic
from omnirelay.gateway.tasks.model import Family


def families() -> dict[str, Family]:
    found = [pic.family(), documents.family(), models3d.family(), kling.family()]
    return {family.name: family for family in found}
