"""The base of every config section (task options, fitness, data, model, ...).

It lives apart from `config.py` and `tasks/` so that `data/` and `models/` can declare
their sections without importing the tasks or the run config.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class NoOptions(Section):
    """A section that takes no keys."""
