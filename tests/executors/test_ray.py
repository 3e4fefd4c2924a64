"""The Ray executor on a real local Ray cluster (2 CPUs, started once for this module):
same results as the local executor, a killed worker, raising evaluations, a run stopped
by failures, a killed driver, baselines on the workers."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from faulty_tasks import comparable, journal_lines, register, write

from evotune.cli import main

try:
    import ray
except ImportError as err:  # `make test` installs it (the dev extra): this is a bare setup
    pytest.skip(
        f"Ray is not importable ({err}): pip install 'evotune[ray]'", allow_module_level=True
    )

HERE = Path(__file__).parent
ONEMAX = """\
task: {name: onemax, length: 40}
search: {population: 8, generations: 6, seed: 3}
fitness: {delay: 0.02}
executor: {chunk_size: 1}
output: {report: false}
"""
ZDT = """\
task: {name: zdt1, n_var: 6}
search: {population: 10, generations: 5, seed: 5}
output: {report: false}
"""
RAISING = """\
task: {name: faulty_onemax, length: 30}
search: {population: 8, generations: 5, seed: 1}
fitness: {fail_prefix: '11', crash_once_dir: %s}
executor: {chunk_size: 2, max_failures: null}
output: {report: false}
"""
BASELINED = """\
task: {name: baselined_onemax, length: 12}
search: {population: 6, generations: 2, seed: 2}
fitness: {fail_prefix: '11'}
executor: {chunk_size: 2, max_failures: null}
output: {report: false}
"""
HALVING = """\
task: {name: hparams, genes: {lr: [0.001, 0.03], dropout: [0.0, 0.5]}, baselines: []}
data: {source: digits, classes: [0, 1, 2], max_per_class: 8,
       split: {val_fraction: 0.3, test_fraction: 0.3}}
model: {backbone: "builtin:small_cnn", channels: keep, normalize: none}
fitness: {epochs: 4, batch_size: 16, device: cpu, schedule: successive_halving,
          min_epochs: 1, eta: 2}
search: {population: 6, generations: 2, seed: 4}
output: {report: false}
"""
LAYERS = """\
task: {name: layers, baselines: [full, head]}
data: {source: digits, classes: [0, 1, 2], max_per_class: 12,
       split: {val_fraction: 0.3, test_fraction: 0.3}}
model: {backbone: "builtin:small_cnn", channels: keep, normalize: none, granularity: leaf}
fitness: {epochs: 2, batch_size: 16, lr: 0.003, device: cpu, threads: 2}
search: {population: 4, generations: 3, seed: 2}
output: {report: false}
"""


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """A local Ray cluster for the whole module; its workers can import faulty_tasks."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), saved]))
    try:
        ray.init(
            address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING
        )
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def faulty(monkeypatch):
    register(monkeypatch)


def run(config: Path, out: Path, *overrides: str) -> int:
    sets = [arg for text in overrides for arg in ("--set", text)]
    return main(["run", str(config), "--out", str(out), "-q", *sets])


@pytest.mark.parametrize(
    ("text", "overrides"),
    [
        (ONEMAX, []),  # one genome per Ray task
        (ZDT, []),  # NSGA-II; no batch size: the generation split over the 2 CPUs
        (RAISING % "null", []),  # evaluations that raise, chunks of 2
    ],
    ids=["onemax-ga", "zdt1-nsga2", "raising"],
)
def test_ray_gives_the_same_run_as_local(tmp_path, faulty, text, overrides):
    config = write(tmp_path, text)
    assert run(config, tmp_path / "local", *overrides) == 0
    assert run(config, tmp_path / "ray", "executor.kind=ray", *overrides) == 0
    assert comparable(tmp_path / "ray") == comparable(tmp_path / "local")


def test_successive_halving_ranks_the_whole_generation_on_ray_too(tmp_path):
    """Ray would split a generation over its 2 slots; halving must rank all 6 together."""
    config = write(tmp_path, HALVING)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in Ray's workers (num_cpus: 1): the same kernels
    try:
        assert run(config, tmp_path / "local") == 0
    finally:
        torch.set_num_threads(threads)
    assert run(config, tmp_path / "ray", "executor.kind=ray") == 0

    def values(run_dir):  # what must not depend on the executor: all but timings
        rows = [(e["generation"], e["index"], e["hash"], e["fitness"], e["metrics"]["rung"])
                for e in journal_lines(run_dir)]  # fmt: skip
        return sorted(rows)

    assert values(tmp_path / "ray") == values(tmp_path / "local")
    assert sorted(row[-1] for row in values(tmp_path / "ray") if row[0] == 0) == [0, 0, 0, 1, 2, 2]


def test_confirmed_elites_match_between_ray_and_local(tmp_path):
    """repeat: elites under halving: the confirmations (full budget, genome by genome)
    are the same values on Ray's workers as in process."""
    config = write(tmp_path, HALVING)
    elites = ("fitness.repeats=2", "fitness.repeat=elites", "search.elitism=2")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run(config, tmp_path / "local", *elites) == 0
    finally:
        torch.set_num_threads(threads)
    assert run(config, tmp_path / "ray", "executor.kind=ray", *elites) == 0

    def values(run_dir):
        return sorted((e["generation"], e["index"], e["hash"], e["fitness"], bool(e.get("confirms")))
                      for e in journal_lines(run_dir))  # fmt: skip

    assert values(tmp_path / "ray") == values(tmp_path / "local")
    assert any(row[-1] for row in values(tmp_path / "ray"))


def without_timings(run_dir):
    """A run's journal and summary without wall-clock values (seconds, train_seconds)."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if "seconds" not in k}
        return [strip(v) for v in value] if isinstance(value, list) else value

    summary = json.loads((run_dir / "summary.json").read_text())
    return sorted(json.dumps(strip(e), sort_keys=True) for e in journal_lines(run_dir)), strip(
        summary
    )


def test_layers_give_the_same_run_locally_on_ray_and_when_resumed_on_ray(tmp_path):
    """fitness.threads is set in every process that evaluates (Ray's workers run with one
    thread unless told), so journals, baselines and test metrics are identical."""
    config = write(tmp_path, LAYERS)
    assert run(config, tmp_path / "local") == 0
    assert run(config, tmp_path / "ray", "executor.kind=ray") == 0
    assert without_timings(tmp_path / "ray") == without_timings(tmp_path / "local")
    assert run(config, tmp_path / "switched", "search.generations=1") == 0
    resume = ["resume", str(tmp_path / "switched"), "-q", "--set", "search.generations=3"]
    assert main([*resume, "--set", "executor.kind=ray"]) == 0
    assert without_timings(tmp_path / "switched") == without_timings(tmp_path / "local")


OWN_MODEL = """\
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(F.relu(self.conv2(F.relu(self.conv1(x)))).mean((2, 3)))


def net():
    return Net()
"""


def test_a_python_backbone_from_a_file_gives_the_same_run_on_ray(tmp_path):
    """A python:FILE.py: module has a made-up name that workers cannot import: its
    classes travel by value with the task."""
    (tmp_path / "own_model.py").write_text(OWN_MODEL)
    backbone = f'"python:{tmp_path / "own_model.py"}:net"'
    config = write(tmp_path, LAYERS.replace('"builtin:small_cnn"', backbone))
    assert run(config, tmp_path / "local", "search.generations=1") == 0
    assert run(config, tmp_path / "ray", "search.generations=1", "executor.kind=ray") == 0
    assert not any("error" in line for line in journal_lines(tmp_path / "ray"))
    # the journals (sorted) agree; with 2 genes, fitness ties make summary's best depend
    # on arrival order, so it is not compared here
    assert without_timings(tmp_path / "ray")[0] == without_timings(tmp_path / "local")[0]


def test_prune_gives_the_same_run_locally_and_on_ray(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOTUNE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = rng.random((120, 8, 8)).astype(np.float32) * 0.5 + 0.4 * y[:, None, None]
    np.savez(tmp_path / "in.npz", x=x, y=y)
    np.savez(tmp_path / "ood.npz", x=x[::-1] + 0.2, y=y)
    text = f"""\
task: {{name: prune, ood: [{{source: npz, path: {tmp_path / "ood.npz"}}}], explain: {{top: 1, samples: 1}}}}
data: {{source: npz, path: {tmp_path / "in.npz"}, split: {{val_fraction: 0.25, test_fraction: 0.25}}}}
model: {{backbone: "builtin:small_cnn", channels: keep, normalize: none}}
search: {{population: 6, max_evaluations: 12, seed: 0}}
fitness: {{hidden: 16, epochs: 6, lr: 0.5, batch_size: 8, device: cpu}}
output: {{report: false}}
"""
    config = write(tmp_path, text)
    assert run(config, tmp_path / "local") == 0
    assert run(config, tmp_path / "ray", "executor.kind=ray") == 0
    assert without_timings(tmp_path / "ray") == without_timings(tmp_path / "local")


def test_raising_evaluations_are_journaled_with_their_error(tmp_path, faulty):
    config = write(tmp_path, RAISING % "null")
    assert run(config, tmp_path / "ray", "executor.kind=ray") == 0
    failed = [e for e in journal_lines(tmp_path / "ray") if "error" in e]
    assert failed and all(e["genome"].startswith("11") for e in failed)
    assert all(e["error"].startswith("ValueError: unlucky genome") for e in failed)


def test_a_killed_worker_is_retried_and_the_run_is_unchanged(tmp_path, faulty):
    crashes = tmp_path / "crashes"
    config = write(tmp_path, RAISING % crashes)
    assert run(config, tmp_path / "ray", "executor.kind=ray") == 0
    killed = [int(p.read_text()) for p in crashes.iterdir()]
    assert len(killed) == 2 and os.getpid() not in killed  # two workers died, not us
    undisturbed = write(tmp_path, RAISING % "null", "undisturbed.yaml")
    assert run(undisturbed, tmp_path / "local") == 0
    assert comparable(tmp_path / "ray") == comparable(tmp_path / "local")


def test_a_worker_dying_more_than_max_retries_fails_its_genomes(tmp_path, faulty):
    config = write(tmp_path, RAISING % (tmp_path / "crashes"))
    overrides = ["executor.kind=ray", "executor.max_retries=0", "search.generations=1"]
    assert run(config, tmp_path / "ray", *overrides) == 0
    crashed = [
        e for e in journal_lines(tmp_path / "ray") if "WorkerCrashedError" in e.get("error", "")
    ]
    assert len(crashed) == 2 * 2  # two tasks of two genomes


def test_too_many_failures_stop_a_ray_run_that_resumes_once_fixed(tmp_path, faulty, capsys):
    flag = tmp_path / "broken"
    flag.touch()
    text = RAISING.replace("crash_once_dir: %s", f"broken_flag: {flag}")
    config = write(tmp_path, text)
    assert run(config, tmp_path / "ray", "executor.kind=ray", "executor.max_failures=3") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "evaluations failed in a row" in err
    assert "RuntimeError: broken while" in err and len(err.splitlines()) == 1
    flag.unlink()
    resume = ["resume", str(tmp_path / "ray"), "-q", "--set", "executor.max_failures=null"]
    assert main(resume) == 0
    assert run(config, tmp_path / "local") == 0
    assert comparable(tmp_path / "ray") == comparable(tmp_path / "local")


def test_a_killed_driver_resumes_to_the_same_result(tmp_path, cluster):
    config = write(tmp_path, ONEMAX.replace("generations: 6", "generations: 8"))
    assert run(config, tmp_path / "local") == 0
    out = tmp_path / "killed"
    args = ["--set", "executor.kind=ray", "--set", f"executor.address={cluster}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "evotune", "run", str(config), "--out", str(out), "-q", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    kill_after_lines(proc, out / "journal.jsonl", lines=20)
    assert 20 <= len(journal_lines(out)) < 8 * 8
    assert main(["resume", str(out), "-q"]) == 0  # joins the same cluster
    assert comparable(out) == comparable(tmp_path / "local")


def kill_after_lines(proc: subprocess.Popen, journal: Path, lines: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= lines:
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"run ended before the kill: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_the_task_is_shipped_once_per_worker_not_per_evaluation(tmp_path, faulty):
    loads = tmp_path / "loads"
    loads.mkdir()
    text = RAISING.replace("crash_once_dir: %s", f"load_log: {loads}")
    config = write(tmp_path, text)
    assert run(config, tmp_path / "ray", "executor.kind=ray", "search.generations=3") == 0
    tasks = len(journal_lines(tmp_path / "ray")) / 2
    workers = {name.split("-")[0] for name in os.listdir(loads)}
    assert len(os.listdir(loads)) == len(workers) < tasks  # one load per worker process


def test_more_gpus_per_evaluation_than_the_cluster_has_is_bad_input(tmp_path, capsys):
    config = write(tmp_path, ONEMAX)
    assert run(config, tmp_path / "ray", "executor.kind=ray", "executor.num_gpus=1") == 2
    assert "executor.num_gpus: 1.0 per evaluation, but the Ray cluster has 0 GPUs" in (
        capsys.readouterr().err
    )


def test_batches_of_genomes_travel_together(tmp_path):
    from evotune.executors.ray import RayExecutor
    from evotune.tasks.toy import OneMax

    executor = RayExecutor(chunk_size=3)
    genomes = np.random.default_rng(0).integers(0, 2, (8, 10)).astype(np.int8)
    chunks = list(executor.map(OneMax(10), genomes, np.zeros(8, dtype=np.int64)))
    assert sorted(len(c) for c, _, _ in chunks) == [2, 3, 3]
    for chunk, results, _ in chunks:
        assert [r.fitness[0] for r in results] == genomes[chunk].sum(axis=1).tolist()
    task = OneMax(10)
    assert executor.share(task) is executor.share(task)  # one put per run
    even = RayExecutor()  # no batch size anywhere: split over the 2 CPUs, or the in-flight cap
    assert [len(c) for c in even.chunks(task, 9)] == [5, 4]
    assert [len(c) for c in RayExecutor(max_in_flight=1).chunks(task, 9)] == [9]
    assert [len(c) for c in RayExecutor(num_cpus=0.5).chunks(task, 9)] == [3, 3, 3]


def test_baselines_run_on_the_workers_behind_the_failure_guard(tmp_path, faulty):
    config = write(tmp_path, BASELINED)
    assert run(config, tmp_path / "ray", "executor.kind=ray") == 0
    lines = (tmp_path / "ray" / "baselines.jsonl").read_text().splitlines()
    evaluated = [e for e in map(json.loads, lines) if e["kind"] == "eval"]
    failed = [e for e in evaluated if "error" in e]
    assert failed and all(e["genome"].startswith("11") for e in failed)
    assert all(e["metrics"]["pid"] != os.getpid() for e in evaluated if "error" not in e)
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["baseline_failures"]["full"].startswith("ValueError: unlucky genome")
    assert summary["baselines"]["random"]["metrics"]["candidates"] == summary["evaluations"]
