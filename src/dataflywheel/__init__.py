"""dataflywheel: feedback in, better recommendations and decisions out, evidence the loop compounds.

>>> import dataflywheel as dfw
>>> wheel = dfw.open("sqlite:///flywheel.db")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dataflywheel.config import Settings, load_settings
from dataflywheel.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    DatasetError,
    FlywheelError,
    ForbiddenError,
    ModelError,
    NotFoundError,
    TrainingError,
    ValidationError,
)

if TYPE_CHECKING:
    from dataflywheel.wheel import Flywheel, open

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ConfigError",
    "ConflictError",
    "DatasetError",
    "Flywheel",
    "FlywheelError",
    "ForbiddenError",
    "ModelError",
    "NotFoundError",
    "Settings",
    "TrainingError",
    "ValidationError",
    "__version__",
    "load_settings",
    "open",
]


def __getattr__(name: str) -> Any:
    """``Flywheel`` and ``open`` load the engine (models, training) on first use, so that
    commands that only need the store, such as ``flywheel import``, start quickly."""
    if name in ("Flywheel", "open"):
        from dataflywheel import wheel

        value = getattr(wheel, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
