"""dataflywheel: feedback in, better recommendations and decisions out, evidence the loop compounds."""

from __future__ import annotations

__version__ = "0.1.0"
