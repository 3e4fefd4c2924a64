"""Optuna's samplers behind ask/tell: gene mapping, valid genomes, resume equality."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from evotune.cli import main
from evotune.engine.constraints import AtMost, ConstrainedSpace
from evotune.engine.spaces import BinarySpace, Choice, Int, MixedSpace, Real, RealVectorSpace

optuna = pytest.importorskip("optuna")

from evotune.engine.optuna_search import (  # noqa: E402
    OptunaSearch,
    distributions,
    from_params,
    to_params,
)

MIXED = MixedSpace(
    [Real("x", -1.0, 1.0), Real("lr", 1e-6, 1e-1, log=True), Int("n", 1, 9), Choice("c", ("a", 2))]
)


@pytest.mark.parametrize(
    "space",
    [MIXED, BinarySpace(12, frozen_prefix=3), RealVectorSpace(5, low=-2.0, high=2.0)],
    ids=["mixed", "binary", "real"],
)
def test_genomes_round_trip_through_optuna_parameters(space):
    dists = distributions(space, optuna)
    genomes = space.sample(20, np.random.default_rng(0))
    for row in genomes:
        params = to_params(space, row, dists)
        assert all(dists[k]._contains(dists[k].to_internal_repr(v)) for k, v in params.items())
        assert np.allclose(from_params(space, params), row)


@pytest.mark.parametrize("sampler", ["tpe", "optuna_nsga2"])
def test_asked_genomes_are_repaired_into_the_constrained_space(sampler):
    space = ConstrainedSpace([Int("kept", 1, 10), Int("frozen", 0, 10)], [AtMost("frozen", "kept")])
    search = OptunaSearch(space, np.random.default_rng(1), 6, sampler=sampler)
    for _ in range(4):
        genomes = search.ask()
        assert space.valid(genomes).all()
        search.tell(genomes, (genomes[:, :1] - 7.0) ** 2)
    assert search.state_dict()["history"].shape == (24, 2)


def comparable(run_dir: Path) -> dict:
    journal = [json.loads(x) for x in (run_dir / "journal.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("wall_seconds")
    return {"journal": [{k: v for k, v in e.items() if k != "seconds"} for e in journal],
            "summary": summary}  # fmt: skip


CONFIG = """\
task: mixed_sphere
search: {algorithm: ALGO, population: 5, generations: 6, seed: 4}
fitness: {delay: 0.03}
executor: {chunk_size: 1}
output: {report: false}
"""


@pytest.mark.parametrize("algorithm", ["tpe", "optuna_nsga2"])
def test_resume_extends_a_run_like_a_longer_one(tmp_path, algorithm):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.replace("ALGO", algorithm).replace("delay: 0.03", "delay: 0"))
    assert main(["run", str(config), "--out", str(tmp_path / "long"), "-q"]) == 0
    short = ["--set", "search.generations=3"]
    assert main(["run", str(config), "--out", str(tmp_path / "short"), "-q", *short]) == 0
    assert main(["resume", str(tmp_path / "short"), "-q", "--set", "search.generations=6"]) == 0
    assert comparable(tmp_path / "short") == comparable(tmp_path / "long")


def test_killed_tpe_run_resumes_to_the_same_result(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.replace("ALGO", "tpe"))
    assert main(["run", str(config), "--out", str(tmp_path / "whole"), "-q"]) == 0
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "evotune", "run", str(config), "--out", str(out), "-q"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal, deadline = out / "journal.jsonl", time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 13:  # mid generation 2
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"run ended before the kill: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert main(["resume", str(out), "-q"]) == 0
    assert comparable(out) == comparable(tmp_path / "whole")
