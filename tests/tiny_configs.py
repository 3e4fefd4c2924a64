"""The tiny `layers` config many tests start from: three digit classes of scikit-learn's
digits (embedded, no download), evotune's small CNN, two epochs on the CPU. Each call
returns a fresh dict; a test passes what it changes."""

from __future__ import annotations

import json
from typing import Any


def tiny_layers(
    *,
    baselines: list[str] | tuple[str, ...] = (),
    max_per_class: int = 12,
    model: dict[str, Any] | None = None,
    fitness: dict[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A `layers` run config; `model` and `fitness` update the defaults, any other
    keyword (`search`, `output`, ...) is a section as given."""
    return {
        "task": {"name": "layers", "baselines": list(baselines)},
        "data": {
            "source": "digits",
            "classes": [0, 1, 2],
            "max_per_class": max_per_class,
            "split": {"val_fraction": 0.3, "test_fraction": 0.3},
        },
        "model": {
            "backbone": "builtin:small_cnn",
            "channels": "keep",
            "normalize": "none",
            "granularity": "leaf",
            **(model or {}),
        },
        "fitness": {"epochs": 2, "batch_size": 16, "lr": 0.003, "device": "cpu", **(fitness or {})},
        **sections,
    }


def updated(base: dict[str, Any], section: str, **keys: Any) -> dict[str, Any]:
    """A fresh copy of the config `base` with `keys` set in `section`."""
    raw = json.loads(json.dumps(base))
    raw.setdefault(section, {}).update(keys)
    return raw


def task_from(raw: dict[str, Any]) -> Any:
    """The task a raw config builds, as `evotune run` builds it."""
    from evotune.config import resolve

    config = resolve(raw)
    return config.task_class.from_config(config)
