"""The one exception tree of dataflywheel.

Every error the engine raises on purpose derives from :class:`FlywheelError`; each carries a
stable machine-readable ``code`` and the HTTP status the API maps it to, so the CLI, the HTTP
layer and the Python API report the same failure the same way.

    FlywheelError
    ├── ConfigError          bad settings or store URL
    ├── ValidationError      bad input (names the field and the reason)
    ├── NotFoundError        unknown user, item, model, experiment, decision...
    ├── ConflictError        the operation contradicts the current state
    ├── AuthError            missing or wrong API key / scope
    ├── ModelError           a model artifact that cannot be used (corrupt, newer format)
    ├── TrainingError        training could not produce a model
    └── DatasetError         a dataset that cannot be fetched or read
"""

from __future__ import annotations

from typing import Any


class FlywheelError(Exception):
    """Base of every error dataflywheel raises on purpose."""

    code = "error"
    status = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body shared by the HTTP API and ``--json`` CLI output."""
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class ConfigError(FlywheelError):
    code = "config_error"
    status = 500


class ValidationError(FlywheelError):
    code = "invalid"
    status = 422

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        if field is not None:
            details["field"] = field
        super().__init__(message, **details)
        self.field = field


class NotFoundError(FlywheelError):
    code = "not_found"
    status = 404


class ConflictError(FlywheelError):
    code = "conflict"
    status = 409


class AuthError(FlywheelError):
    code = "unauthorized"
    status = 401


class ForbiddenError(AuthError):
    code = "forbidden"
    status = 403


class ModelError(FlywheelError):
    code = "model_error"
    status = 503


class TrainingError(FlywheelError):
    code = "training_error"
    status = 409


class DatasetError(FlywheelError):
    code = "dataset_error"
    status = 502
