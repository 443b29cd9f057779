"""What the coordinator's loop is told: small records put on its queue by other threads."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from runner.records import Batch, BatchResult, BuiltDeck, RenderedChart, Retrieval


@dataclass(frozen=True)
class ChartRetrieved:
    """A chart's data arrived, or the final reason it will not."""

    retrieval: Retrieval


@dataclass(frozen=True)
class BatchEnded:
    batch: Batch
    future: Future[BatchResult]


@dataclass(frozen=True)
class RenderDone:
    future: Future[RenderedChart | BuiltDeck]


@dataclass(frozen=True)
class RenderPoolReady:
    """The render workers are up: charts waiting for them can go."""


Event = ChartRetrieved | BatchEnded | RenderDone | RenderPoolReady
