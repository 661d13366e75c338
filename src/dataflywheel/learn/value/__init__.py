"""The value of data: what each extra unit of data, and each slice of it, is worth to the model.

:func:`assess` measures; :func:`value_report` answers from a cache kept per store watermark.
"""

from __future__ import annotations

from dataflywheel.learn.value.assess import assess
from dataflywheel.learn.value.cache import value_report

__all__ = ["assess", "value_report"]
