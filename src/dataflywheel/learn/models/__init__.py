"""Recommender models sharing one interface, a registry by name, and artifact loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dataflywheel.errors import ModelError, ValidationError
from dataflywheel.learn.models.base import Recommender, read_manifest
from dataflywheel.learn.models.bpr import BPR
from dataflywheel.learn.models.ease import EASE
from dataflywheel.learn.models.ials import IALS
from dataflywheel.learn.models.itemknn import ItemKNN
from dataflywheel.learn.models.popularity import Popularity
from dataflywheel.learn.models.rp3beta import RP3Beta

__all__ = [
    "BPR",
    "EASE",
    "IALS",
    "MODELS",
    "ItemKNN",
    "Popularity",
    "RP3Beta",
    "Recommender",
    "create",
    "load_model",
]

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, ItemKNN, IALS, BPR, EASE, RP3Beta)
}


def create(name: str, **params: Any) -> Recommender:
    """A new, unfitted model of the registered type ``name``."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValidationError(
            f"unknown model {name!r}; choose one of {sorted(MODELS)}", field="model"
        ) from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValidationError(f"bad parameters for {name}: {exc}", field="params") from exc


def load_model(directory: Path) -> Recommender:
    """Load any saved model, choosing the class by the name recorded in ``model.json``."""
    name = read_manifest(directory)["name"]
    if name not in MODELS:
        raise ModelError(f"artifact holds unknown model type {name!r}")
    return MODELS[name].load(directory)
