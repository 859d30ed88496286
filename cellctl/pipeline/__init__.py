"""One part's way through the cell: acquire -> analyse -> publish, and the loops that run it."""

from cellctl.pipeline.acquire import Acquisition, acquire, acquisition_budget_s
from cellctl.pipeline.analyse import (
    ModelKey,
    PartResult,
    analyse,
    model_key,
)
from cellctl.pipeline.publish import DurableWriter, Publisher
from cellctl.pipeline.runner import Pipeline

__all__ = [
    "Acquisition",
    "DurableWriter",
    "ModelKey",
    "PartResult",
    "Pipeline",
    "Publisher",
    "acquire",
    "acquisition_budget_s",
    "analyse",
    "model_key",
]
