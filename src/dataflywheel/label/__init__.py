"""The label loop: triggers find hard cases, people label them, labels return as strong signal,
regression suites hold candidates to past failures, and curated feedback exports for reuse."""

from __future__ import annotations

from dataflywheel.label.labels import Labels
from dataflywheel.label.queue import LabelQueue
from dataflywheel.label.rules import matches, validate

__all__ = ["LabelQueue", "Labels", "matches", "validate"]
