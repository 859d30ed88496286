"""Base of every settings model: unknown keys are errors, validated values are immutable."""

from pydantic import BaseModel, ConfigDict


class SettingsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
