"""Every operation beyond chat, over one shared :class:`OperationRunner`."""

from __future__ import annotations

from omnirelay.gateway.audio import Audio
from omnirelay.gateway.completions import Completions
from omnirelay.gateway.embeddings import Embeddings, Moderations
from omnirelay.gateway.images import Images
from omnirelay.gateway.operations import OperationRunner
from omnirelay.gateway.rerank import Rerank


class Surface:
    def __init__(self, runner: OperationRunner) -> None:
        self.embeddings = Embeddings(runner)
        self.moderations = Moderations(runner)
        self.completions = Completions(runner)
        self.images = Images(runner)
        self.audio = Audio(runner)
        self.rerank = Rerank(runner)
