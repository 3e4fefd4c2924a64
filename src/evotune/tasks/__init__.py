"""Task registry: `task: NAME` in a config picks one of these.

Torch tasks are imported only when used, so the toy tasks (and `evotune validate` of
them) start without loading torch.
"""

from __future__ import annotations

import importlib

from evotune.errors import UserError, did_you_mean
from evotune.tasks.base import Task

_TASKS: dict[str, str] = {
    "onemax": "evotune.tasks.toy:OneMax",
    "zdt1": "evotune.tasks.toy:ZDT1",
    "zdt2": "evotune.tasks.toy:ZDT2",
    "mixed_sphere": "evotune.tasks.toy:MixedSphere",
    "layers": "evotune.tasks.layers:LayersTask",
    "prune": "evotune.tasks.prune:PruneTask",
    "hparams": "evotune.tasks.hparams:HparamsTask",
    "weights": "evotune.tasks.weights:WeightsTask",
}
TASKS = tuple(_TASKS)


def get_task(name: str, where: str = "task") -> type[Task]:
    if name not in _TASKS:
        raise UserError(
            f"{where}: unknown task {name!r}{did_you_mean(name, _TASKS)}; "
            f"choose one of {', '.join(sorted(_TASKS))}"
        )
    module, _, attr = _TASKS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["TASKS", "Task", "get_task"]
