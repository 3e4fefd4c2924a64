"""Task registry: `task: NAME` in a config picks one of these."""

from __future__ import annotations

from evotune.errors import UserError, did_you_mean
from evotune.tasks.base import NoOptions, Section, Task
from evotune.tasks.toy import ZDT1, ZDT2, MixedSphere, OneMax

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (OneMax, ZDT1, ZDT2, MixedSphere)}


def get_task(name: str, where: str = "task") -> type[Task]:
    if name not in TASKS:
        raise UserError(
            f"{where}: unknown task {name!r}{did_you_mean(name, TASKS)}; "
            f"choose one of {', '.join(sorted(TASKS))}"
        )
    return TASKS[name]


__all__ = ["TASKS", "NoOptions", "Section", "Task", "get_task"]
