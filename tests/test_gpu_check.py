"""benchmarks/gpu_check.py in its CPU mode (`--device cpu --quick`), so that the script a
GPU machine runs does not rot: every task end to end, then the timing table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_runs_every_task_and_prints_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EVOTUNE_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("gpu_check", BENCHMARK)
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # its dataclasses look it up
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "table.md"
    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    table = out.read_text()
    assert table in capsys.readouterr().out
    for row in ("matmul", "layers:", "prune: 30 heads 2048-512-10", "weights: 10 members"):
        assert row in table
    assert table.count("| bf16 |") >= 2  # the peak and the layers generation
