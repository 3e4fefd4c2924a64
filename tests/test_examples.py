"""Every example config in examples/ validates (paths need not exist to validate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evotune.config import load_config
from evotune.pretrain import load_pretrain_config

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_validates(path):
    if path.stem.startswith("pretrain"):
        assert load_pretrain_config(path).pretrain.epochs >= 1
    else:
        assert load_config(path).task_name
