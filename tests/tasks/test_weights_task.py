"""Task `weights`: the genetic autoencoder (SEEDS.md §4) and evolved module weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from evotune.cli import main
from evotune.config import REGISTRIES, resolve
from evotune.engine.loop import Callbacks
from evotune.errors import UserError
from evotune.infer import read_model
from evotune.runner import load_resume_config, resume, start
from evotune.tasks.weights import WeightsTask

BARS = 3  # classes: a bright vertical bar at class-specific columns


def write_data(path, n=180, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % BARS
    x = rng.random((n, 8, 8)) * 0.2
    for c in range(BARS):
        x[y == c, :, 2 * c + 1 : 2 * c + 3] += 0.7
    np.savez(path, x=x.astype(np.float32), y=y)
    return path


def raw_config(data_path, **task):
    return {
        "task": {"name": "weights", "sizes": [64, 24, 8], **task},
        "data": {"source": "npz", "path": str(data_path), "split": {"test_fraction": 0.25}},
        "search": {"preset": "seed", "generations": 3},
        "fitness": {"examples": 64, "steps_per_generation": 5, "epochs": 1},
        "output": {"report": False},
    }


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("data") / "bars.npz")


def config(data_path, overrides=None, **task):
    raw = raw_config(data_path, **task)
    for key, value in (overrides or {}).items():
        section, name = key.split(".")
        raw[section][name] = value
    return resolve(raw)


def stage_task(data_path, mode="ga_assisted", stage="layer1"):
    task = WeightsTask.from_config(config(data_path, mode=mode))
    task.enter_stage(stage)
    return task


def summary_without_times(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("wall_seconds")
    for stage in summary["stages"].values():
        stage.pop("wall_seconds")
    return summary


def journal_without_times(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in e.items() if k != "seconds"} for e in lines]


# ---- the seed's operators -------------------------------------------------------------


def seed_operators():
    search = resolve({"task": "weights", "search": {"preset": "seed"}}).search
    ops = {f: r.build(getattr(search.operators, f), f) for f, r in REGISTRIES.items()}
    assert search.population == 10 and search.elitism == 5
    return ops


def test_crossover_takes_each_weight_from_parent_one_with_p_08():
    ops = seed_operators()
    parents = np.stack([np.ones(200_000), np.full(200_000, 2.0)]).astype(np.float32)
    children = ops["crossover"](parents, np.random.default_rng(0), None)
    from_first = (children[0] == 1.0).mean()
    assert from_first == pytest.approx(0.8, abs=0.005)
    assert np.isin(children, [1.0, 2.0]).all()  # every weight comes from a parent


def test_mutation_zeroes_each_weight_with_p_001():
    ops = seed_operators()
    genomes = np.ones((4, 100_000), dtype=np.float32)
    mutated = ops["mutation"](genomes, np.random.default_rng(0), None)
    assert (mutated == 0).mean() == pytest.approx(0.01, abs=0.001)
    assert np.isin(mutated, [0.0, 1.0]).all()


def test_truncation_keeps_the_best_half_not_the_worst():
    ops = seed_operators()
    losses = np.array([5.0, 1.0, 9.0, 2.0, 7.0, 3.0, 8.0, 4.0, 6.0, 0.5])
    chosen = ops["selection"](losses, 5, np.random.default_rng(0))
    assert sorted(losses[chosen]) == [0.5, 1.0, 2.0, 3.0, 4.0]


# ---- fitness --------------------------------------------------------------------------


def test_batched_fitness_equals_per_member_fitness(data_path):
    task = stage_task(data_path)
    genomes = task.space.sample(6, np.random.default_rng(0))
    seeds = np.arange(6)
    batched = [e.fitness[0] for e in task.evaluate(genomes, seeds)]
    alone = [task.evaluate(g[None], seeds[:1])[0].fitness[0] for g in genomes]
    assert batched == pytest.approx(alone, rel=1e-5)
    e = task.evaluate(genomes[:1], seeds[:1])[0]
    assert e.fitness[0] == pytest.approx(1.0 / e.metrics["rmse"])


def test_layer_two_sees_layer_one_codes(data_path):
    task = stage_task(data_path, stage="layer1")
    first = task.space.sample(1, np.random.default_rng(0))[0]
    task.finish_stage("layer1", first)
    spec = task.enter_stage("layer2")
    assert task.space.n_genes == 8 * 24 and task.layer.inputs.shape[1] == 24
    w1 = torch.from_numpy(first).view(24, 64)
    assert torch.allclose(task.layer.inputs, torch.relu(task.x @ w1.T))
    assert task.layer.output == "relu"  # an inner reconstruction
    assert spec.key != task.enter_stage("layer1").key


def test_ga_assisted_refine_improves_and_really_changes_the_weights(data_path):
    task = stage_task(data_path)
    genomes = task.space.sample(5, np.random.default_rng(1))
    before = np.array([e.metrics["rmse"] for e in task.evaluate(genomes, np.zeros(5))])
    refined = task.refine(genomes.copy(), np.arange(5))
    after = np.array([e.metrics["rmse"] for e in task.evaluate(refined, np.zeros(5))])
    assert refined.shape == genomes.shape and refined.dtype == np.float32
    assert (np.abs(refined - genomes).max(axis=1) > 1e-3).all()  # no silent no-op
    assert (after < before).all()
    assert stage_task(data_path, mode="ga").refine is None


# ---- runs -----------------------------------------------------------------------------


def test_ga_assisted_run_improves_on_its_first_population(data_path, tmp_path):
    summary = start(config(data_path, mode="ga_assisted"), tmp_path / "run")
    stage = tmp_path / "run" / "stages" / "layer1"
    records = [json.loads(line) for line in (stage / "generations.jsonl").read_text().splitlines()]
    assert records[-1]["best"][0] > records[0]["best"][0]
    journal = journal_without_times(stage / "journal.jsonl")
    first = {e["hash"] for e in journal if e["generation"] == 0}
    second = [e for e in journal if e["generation"] == 1]
    assert len(second) == 10 and not {e["hash"] for e in second[:5]} & first  # refined elites
    assert set(summary["stages"]) == {"layer1", "layer2"}
    metrics = summary["best"]["metrics"]
    assert metrics["test_accuracy"] > 0.6 and metrics["svm_train_examples"] == 135
    assert metrics["test_rmse"] == pytest.approx(metrics["train_rmse"], rel=0.3)
    top = journal_without_times(tmp_path / "run" / "journal.jsonl")
    assert len(top) == summary["evaluations"] and {e["stage"] for e in top} == {"layer1", "layer2"}


def test_model_file_holds_one_tied_tensor_per_layer(data_path, tmp_path):
    start(config(data_path, mode="ga"), tmp_path / "run")
    spec, tensors = read_model(tmp_path / "run" / "model.safetensors")
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        "layer1": (24, 64),
        "layer2": (8, 24),
    }
    assert spec["sizes"] == [64, 24, 8] and spec["classes"] == ["0", "1", "2"]


class Interrupt(Callbacks):
    """Raises KeyboardInterrupt once `count` evaluations were journaled (mid-generation)."""

    def __init__(self, count):
        self.count, self.seen = count, 0

    def evaluated(self, count):
        self.seen += count
        if self.seen >= self.count:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_to_the_same_result(data_path, tmp_path):
    start(config(data_path), tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        start(config(data_path), tmp_path / "cut", Interrupt(45))  # inside layer 2
    resume(tmp_path / "cut", load_resume_config(tmp_path / "cut"))
    assert summary_without_times(tmp_path / "cut") == summary_without_times(tmp_path / "whole")
    for name in ("journal.jsonl", "stages/layer2/journal.jsonl"):
        cut = journal_without_times(tmp_path / "cut" / name)
        assert cut == journal_without_times(tmp_path / "whole" / name)


def test_killed_run_resumes_to_the_same_result(data_path, tmp_path):
    """SIGKILL in the middle of layer 2, then `evotune resume`."""
    raw = raw_config(data_path)
    raw["search"]["generations"] = 6
    cfg = tmp_path / "ae.yaml"
    cfg.write_text(json.dumps(raw))
    assert main(["run", str(cfg), "--out", str(tmp_path / "whole"), "-q"]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "evotune", "run", str(cfg), "--out", str(tmp_path / "cut"), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    journal = tmp_path / "cut" / "stages" / "layer2" / "journal.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 25:
            break
        time.sleep(0.002)
    assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert main(["resume", str(tmp_path / "cut"), "-q"]) == 0
    assert summary_without_times(tmp_path / "cut") == summary_without_times(tmp_path / "whole")
    for name in ("journal.jsonl", "generations.jsonl"):
        cut = journal_without_times(tmp_path / "cut" / name)
        assert cut == journal_without_times(tmp_path / "whole" / name)


def test_more_generations_redo_later_stages_like_a_longer_run(data_path, tmp_path):
    start(config(data_path, mode="ga", overrides={"search.generations": 4}), tmp_path / "long")
    start(config(data_path, mode="ga", overrides={"search.generations": 2}), tmp_path / "ext")
    resume(tmp_path / "ext", load_resume_config(tmp_path / "ext", ["search.generations=4"]))
    assert summary_without_times(tmp_path / "ext") == summary_without_times(tmp_path / "long")


@pytest.mark.parametrize("mode", ["sgd", "layerwise_sgd"])
def test_gradient_baselines_write_one_record_per_epoch(data_path, tmp_path, mode):
    summary = start(config(data_path, mode=mode), tmp_path / "run")
    stages = ["sgd"] if mode == "sgd" else ["layer1", "layer2"]
    assert list(summary["stages"]) == stages and summary["algorithm"] == mode
    assert summary["evaluations"] == 0 and summary["generations"] == len(stages)
    assert 0 < summary["best"]["metrics"]["test_rmse"] < 1


def test_cli_run_then_infer_on_generated_images(data_path, tmp_path, capsys):
    cfg = tmp_path / "ae.yaml"
    raw = raw_config(data_path, mode="ga_assisted")
    raw["output"] = {"report": True}
    cfg.write_text(json.dumps(raw))  # JSON is YAML
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "-q"]) == 0
    assert (tmp_path / "run" / "report.html").exists()
    for c in range(BARS):
        pixels = np.zeros((40, 40), dtype=np.uint8)  # any size: resized to 8x8
        pixels[:, 10 * c + 5 : 10 * c + 15] = 230
        Image.fromarray(pixels).save(tmp_path / f"bar{c}.png")
    predicted = []
    for c in range(BARS):
        out = tmp_path / f"cmp{c}.png"
        assert (
            main(["infer", str(tmp_path / "run"), str(tmp_path / f"bar{c}.png"), "--out", str(out)])
            == 0
        )
        predicted.append(capsys.readouterr().out.split("predicted class: ")[1].split()[0])
        with Image.open(out) as image:
            assert image.size == (2 * 64 + 8, 64)
    assert predicted == ["0", "1", "2"]
    assert main(["infer", str(tmp_path / "run"), str(tmp_path / "missing.png")]) == 2
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "ae.safetensors")]) == 0
    spec, tensors = read_model(tmp_path / "ae.safetensors")  # one file: layers and the SVM
    assert {"layer1", "layer2", "svm.support_vectors", "svm.dual_coef"} <= tensors.keys()
    assert spec["pipeline"]["classes"] == spec["classes"]
    assert not (tmp_path / "ae.svm.npz").exists()


def test_module_kind_evolves_an_mlp_with_batched_fitness(data_path, tmp_path):
    cfg = resolve(
        {**raw_config(data_path, mode="ga_assisted"), "model": {"kind": "module", "hidden": [16]}}
    )
    task = WeightsTask.from_config(cfg)
    genomes = task.space.sample(4, np.random.default_rng(0))
    batched = [e.fitness[0] for e in task.evaluate(genomes, np.zeros(4))]
    alone = [task.evaluate(g[None], np.zeros(1))[0].fitness[0] for g in genomes]
    assert batched == pytest.approx(alone, rel=1e-5)
    assert task.objectives[0].name == "loss" and task.objectives[0].direction == "min"
    summary = start(cfg, tmp_path / "run")
    assert summary["best"]["metrics"]["test_accuracy"] > 0.5
    stage = summary["stages"]["module"]["best"]["fitness"][0]
    first = json.loads((tmp_path / "run" / "generations.jsonl").read_text().splitlines()[0])
    assert stage < first["best"][0]  # the loss went down


@pytest.mark.parametrize(
    ("task", "model", "message"),
    [
        ({"sizes": [10, 5]}, None, "task.sizes: the first width is 10"),
        ({"mode": "layerwise_sgd"}, {"kind": "module"}, "does not apply to model.kind"),
        ({}, {"kind": "module", "module": "nope"}, "package.module:factory"),
        ({}, {"kind": "module", "module": "math:nope"}, "cannot import"),
        ({}, {"kind": "module", "module": "math:sqrt"}, r"math:sqrt\(\*\*model.args\) failed"),
        ({}, {"kind": "module", "module": "builtins:dict"}, "expected a torch.nn.Module"),
    ],
)
def test_bad_configs_name_the_key(data_path, task, model, message):
    raw = raw_config(data_path, **task)
    if model:
        raw["model"] = model
    with pytest.raises(UserError, match=message):
        WeightsTask.from_config(resolve(raw))


@pytest.mark.parametrize(
    ("search", "message"),
    [({"algorithm": "random"}, "search.algorithm 'random'"), ({"elitism": 0}, "elitism >= 1")],
)
def test_ga_assisted_needs_the_ga_with_elites(data_path, search, message):
    raw = raw_config(data_path, mode="ga_assisted")
    raw["search"] = {"generations": 2, **search}
    with pytest.raises(UserError, match=message):
        WeightsTask.from_config(resolve(raw))
