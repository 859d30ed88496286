"""Base of every settings model: unknown keys are errors, validated values are immutable."""

from pydantic import BaseModel, ConfigDict


class SettingsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldError(ValueError):
    """A check across fields that names the field at fault (dotted, from the model's root),
    so the config loader reports that field's line instead of the model's first."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
