"""dataflywheel: feedback in, better recommendations and decisions out, evidence the loop compounds.

>>> import dataflywheel as dfw
>>> wheel = dfw.open("sqlite:///flywheel.db")
"""

from __future__ import annotations

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
