"""The base of every config section (task options, fitness, data, model, ...).

It lives apart from `config.py` and `tasks/` so that `data/` and `models/` can declare
their sections without importing the tasks or the run config.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class NoOptions(Section):
    """A section that takes no keys."""


def threads_field() -> Any:
    """`fitness.threads` of every torch task (config.py resolves null; tasks/base.py sets
    it in every process that evaluates)."""
    return Field(
        None,
        ge=1,
        description="torch CPU threads of every evaluation, wherever it runs (local, Ray, "
        "baselines, export): a genome's value depends on it; null: resolved into "
        "config.yaml as half the cores (at most 8), or executor.num_cpus on Ray",
    )
