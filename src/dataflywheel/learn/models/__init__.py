"""Recommender models sharing one interface, a registry by name, and artifact loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import scipy.sparse as sp

from dataflywheel.errors import ModelError, ValidationError
from dataflywheel.learn.models.base import Recommender, read_manifest
from dataflywheel.learn.models.bpr import BPR
from dataflywheel.learn.models.ease import EASE
from dataflywheel.learn.models.hybrid import Hybrid
from dataflywheel.learn.models.ials import IALS
from dataflywheel.learn.models.itemknn import ItemKNN
from dataflywheel.learn.models.popularity import Popularity
from dataflywheel.learn.models.rp3beta import RP3Beta

__all__ = [
    "BPR",
    "EASE",
    "IALS",
    "MODELS",
    "Hybrid",
    "ItemKNN",
    "Popularity",
    "RP3Beta",
    "Recommender",
    "create",
    "load_model",
]

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, ItemKNN, IALS, BPR, EASE, RP3Beta, Hybrid)
}


def create(name: str, *, content: sp.spmatrix | None = None, **params: Any) -> Recommender:
    """A new, unfitted model of the registered type ``name``; ``content`` (the items' content
    vectors by dense id) goes to the models that learn from it and is ignored by the others."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValidationError(
            f"unknown model {name!r}; choose one of {sorted(MODELS)}", field="model"
        ) from None
    try:
        model = cls(**params)
    except TypeError as exc:
        raise ValidationError(f"bad parameters for {name}: {exc}", field="params") from exc
    if isinstance(model, Hybrid):
        model.use_content(content)
    return model


def load_model(directory: Path) -> Recommender:
    """Load any saved model, choosing the class by the name recorded in ``model.json``."""
    name = read_manifest(directory)["name"]
    if name not in MODELS:
        raise ModelError(f"artifact holds unknown model type {name!r}")
    return MODELS[name].load(directory)
