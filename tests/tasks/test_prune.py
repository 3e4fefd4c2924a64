"""Task `prune`: fitness, batching independence, the CLI run with its analysis, export,
aggregate, and config errors. Small generated images, builtin backbones."""

from __future__ import annotations

import csv
import json
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.models._api

from evotune.cli import main
from evotune.config import resolve
from evotune.engine.problem import Objective, losses_of
from evotune.errors import UserError
from evotune.prune.export import load_pruned


def make_npz(path, n=150, classes=3, seed=0, shift=0.0):
    """8x8 noise images whose brightness tells the class (pooled features keep it)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.random((n, 8, 8)).astype(np.float32) * 0.5 + 0.4 * y[:, None, None] + shift
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOTUNE_CACHE", str(tmp_path / "cache"))
    ind = make_npz(tmp_path / "in.npz")
    ood = make_npz(tmp_path / "ood.npz", seed=1, shift=0.2)
    return {
        "task": {
            "name": "prune",
            "ood": [{"source": "npz", "path": str(ood)}],
            "explain": {"top": 2, "samples": 2},
            "windows": [[0, 60], [40, 100]],
        },
        "data": {
            "source": "npz",
            "path": str(ind),
            "split": {"val_fraction": 0.25, "test_fraction": 0.25},
        },
        "model": {"backbone": "builtin:small_cnn", "channels": "keep", "normalize": "none"},
        "search": {"preset": "seed", "population": 6, "max_evaluations": 12, "seed": 0},
        "fitness": {"hidden": 16, "epochs": 6, "lr": 0.5, "batch_size": 8, "device": "cpu"},
    }


def task_of(raw, **fitness):
    raw = json.loads(json.dumps(raw))
    raw["fitness"].update(fitness)
    config = resolve(raw)
    return config.task_class.from_config(config)


def write_config(tmp_path, raw, name="prune.yaml"):
    import yaml

    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def test_objectives_space_and_fitness_independent_of_batch_and_order(setup):
    task = task_of(setup)
    assert [o.name for o in task.objectives] == ["accuracy", "active_fraction", "auroc"]
    assert task.space.n_genes == 64  # small_cnn's pooled features
    genomes = task.space.sample(5, np.random.default_rng(0))
    seeds = np.arange(5) + 11
    batch = task.evaluate(genomes, seeds)
    backwards = task.evaluate(genomes[::-1], seeds[::-1])[::-1]
    alone = [task.evaluate(g[None], s[None])[0] for g, s in zip(genomes, seeds)]
    assert task.empty(genomes).tolist() == [False, False, False, True, False]  # p ~ U(0, 1)
    for genome, a, b, c in zip(genomes, batch, backwards, alone):
        np.testing.assert_array_equal(a.fitness, b.fitness)  # NaN equals NaN here
        np.testing.assert_array_equal(a.fitness, c.fitness)
        assert a.metrics["active_fraction"] == pytest.approx(np.mean(genome))
    assert all(np.isnan(batch[3].fitness)) and batch[3].metrics["empty"]  # ranks last
    assert all(0.0 <= a.fitness[2] <= 1.0 for i, a in enumerate(batch) if i != 3)


def test_features_are_cached_on_disk(setup):
    assert not task_of(setup).feats.from_cache
    assert task_of(setup).feats.from_cache  # same backbone, data and preprocessing


@pytest.mark.parametrize("mode,genes", [("neurons", 16), ("both", 64 + 16)])
def test_modes(setup, mode, genes):
    setup["task"]["mode"] = mode
    task = task_of(setup)
    assert task.space.n_genes == genes
    genome = np.zeros((1, genes), dtype=np.uint8)
    genome[0, -3:] = 1  # three hidden units (and, in both, no feature: no classifier)
    empty = task.evaluate(genome, np.array([1]))[0]
    assert empty.metrics.get("empty", False) == (mode == "both")
    if mode == "both":
        genome[0, 0] = 1  # and one feature
    metrics = task.evaluate(genome, np.array([1]))[0].metrics
    assert metrics["active_neurons"] == 3
    assert metrics["active_features"] == (64 if mode == "neurons" else 1)


def test_k_fold_averaging(setup):
    task = task_of(setup, folds=3)
    result = task.evaluate(np.ones((2, 64), dtype=np.uint8), np.array([1, 2]))
    assert all(r.metrics["folds"] == 3 for r in result)


def test_auroc_needs_ood_data(setup, tmp_path, capsys):
    del setup["task"]["ood"]
    assert [o.name for o in task_of(setup).objectives] == ["accuracy", "active_fraction"]
    setup["task"]["objectives"] = ["accuracy", "auroc"]
    with pytest.raises(UserError, match="auroc objective needs OOD data"):
        resolve(setup)
    assert main(["validate", str(write_config(tmp_path, setup))]) == 2


def test_cli_run_front_analysis_report_and_export(setup, tmp_path, capsys):
    run = tmp_path / "run"
    config = write_config(tmp_path, setup)
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    front = summary["pareto"]
    objectives = tuple(Objective(o["name"], o["direction"]) for o in summary["objectives"])
    losses = losses_of(objectives, np.array([p["fitness"] for p in front]))
    for i in range(len(losses)):  # mutually non-dominated
        dominated = (losses <= losses[i]).all(axis=1) & (losses < losses[i]).any(axis=1)
        assert not dominated.any()
    assert all("test_accuracy" in p["metrics"] and "test_auroc" in p["metrics"] for p in front)
    rows = list(csv.DictReader((run / "pareto.csv").open()))
    assert len(rows) == len(front) and "test_accuracy" in rows[0]
    generations = [json.loads(line) for line in (run / "generations.jsonl").open()]
    assert all(g["hypervolume"] is not None for g in generations)
    analysis = json.loads((run / "analysis.json").read_text())
    titles = [s["title"] for s in analysis["sections"]]
    assert titles[:2] == ["Ensembles by accuracy window", "Ensembles by OOD AUROC window"]
    for name in ("pareto", "pareto_3d", "feature_frequency", "gradcam"):
        assert (run / "plots" / f"{name}.png").is_file(), name
    html = (run / "report.html").read_text()
    assert "Ensembles by accuracy window" in html and "plots/gradcam.png" in html
    assert summary["baselines"]["full"]["fitness"][1] == 1.0

    out = tmp_path / "small.safetensors"
    assert main(["export", str(run), "--pick", "smallest", "--out", str(out)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    metrics = meta["metrics"]
    assert metrics["same_predictions"] and metrics["max_logit_difference"] < 1e-5
    assert metrics["head_params"] < metrics["masked_head_params"]
    smallest = min(front, key=lambda p: (p["fitness"][1], -p["fitness"][0]))
    assert meta["mask"] == smallest["genome"]
    assert metrics["test_accuracy"] == pytest.approx(smallest["metrics"]["test_accuracy"])
    net, loaded_meta = load_pruned(out)
    assert loaded_meta["mask"] == meta["mask"]
    assert sum(p.numel() for p in net.head.parameters()) == metrics["head_params"]
    with torch.no_grad():
        assert net(torch.rand(3, 1, 8, 8)).shape == (3, 3)

    other = tmp_path / "run2"
    quiet = "-q --set task.analysis=false --set output.report=false".split()
    assert main(["run", str(config), "--out", str(other), "--set", "search.seed=1", *quiet]) == 0
    merged_dir = tmp_path / "merged"
    assert main(["aggregate", str(run), str(other), "--out", str(merged_dir)]) == 0
    merged = json.loads((merged_dir / "summary.json").read_text())
    union = {
        (p["hash"], p["fitness"][0])
        for d in (run, other)
        for p in json.loads((d / "summary.json").read_text())["pareto"]
    }
    assert {(p["hash"], p["fitness"][0]) for p in merged["pareto"]} <= union
    assert all("test_accuracy" in p["metrics"] for p in merged["pareto"])
    assert (merged_dir / "report.html").is_file()
    fulls = [
        json.loads((d / "summary.json").read_text())["baselines"]["full"] for d in (run, other)
    ]
    full = merged["baselines"]["full"]
    assert full["runs"] == 2 and full["fitness"][0] == pytest.approx(
        (fulls[0]["fitness"][0] + fulls[1]["fitness"][0]) / 2
    )
    third = tmp_path / "run3"  # another configuration: refused, naming the key
    assert main(["run", str(config), "--out", str(third), "--set", "fitness.lr=0.1", *quiet]) == 0
    capsys.readouterr()
    assert main(["aggregate", str(run), str(third), "--out", str(tmp_path / "m2")]) == 2
    assert "config key fitness.lr is 0.1" in capsys.readouterr().err


def test_same_run_whatever_the_executor_batch(setup, tmp_path):
    config = write_config(tmp_path, setup)
    results = []
    for batch in ("null", "3"):
        out = tmp_path / f"run-{batch}"
        quiet = "-q --set task.analysis=false --set output.report=false --set task.baselines=[]"
        args = ["run", str(config), "--out", str(out), "--set", f"executor.chunk_size={batch}"]
        assert main(args + quiet.split()) == 0
        journal = map(json.loads, (out / "journal.jsonl").open())
        results.append([(e["hash"], e["fitness"]) for e in journal])
    assert results[0] == results[1]


def test_seed_run_without_imagenet_weights_exits_2_naming_model_weights(
    setup, tmp_path, monkeypatch, capsys
):
    def offline(*args, **kwargs):  # as on a machine with no network, whatever this one has
        raise URLError("no network (test)")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    del setup["model"]  # the seed's: ImageNet ResNet-50
    config = write_config(tmp_path, setup)
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "model.weights" in err and "weights: none" in err and "Traceback" not in err


def test_feature_ood_scores_are_recorded_beside_the_objective_and_independent_of_batch(setup):
    setup["task"]["ood_scores"] = ["knn", "odin", "energy"]
    setup["task"]["knn_k"] = 5
    setup["search"] = {"population": 6, "max_evaluations": 12, "seed": 0}  # default score
    task = task_of(setup)
    assert task.options.ood_score == "mahalanobis"
    genomes = task.space.sample(6, np.random.default_rng(3))
    genomes = genomes[~task.empty(genomes)]
    seeds = np.arange(len(genomes)) + 1
    together = task.evaluate(genomes, seeds)
    alone = [task.evaluate(g[None], s[None])[0] for g, s in zip(genomes, seeds)]
    for a, b in zip(together, alone):
        assert a.metrics == b.metrics
        assert {"auroc", "auroc_knn", "auroc_odin", "auroc_energy"} <= set(a.metrics)
        assert a.fitness[2] == a.metrics["auroc"]  # mahalanobis: the objective


def test_knn_k_larger_than_the_training_split_is_bad_input(setup):
    setup["task"]["ood_score"] = "knn"
    setup["task"]["knn_k"] = 10_000
    with pytest.raises(UserError, match=r"task.knn_k: 10000 is larger than the training split"):
        task_of(setup)


def test_an_inverted_auroc_of_the_most_accurate_member_is_a_warning(setup):
    task = task_of(setup)
    front = [
        {"metrics": {"accuracy": 0.9, "auroc": 0.2}},
        {"metrics": {"accuracy": 0.3, "auroc": 0.8}},
    ]
    warning = task.inversion_warning({"pareto": front})
    assert "OOD AUROC is 0.200 (< 0.5)" in warning and "mahalanobis or knn" in warning
    front[0]["metrics"]["auroc"] = 0.7
    assert task.inversion_warning({"pareto": front}) is None


def test_an_inverted_recorded_score_is_a_warning_too(setup):
    setup["task"]["ood_scores"] = ["energy", "knn"]
    task = task_of(setup)
    front = [{"metrics": {"accuracy": 0.9, "auroc": 0.7, "auroc_energy": 0.16, "auroc_knn": 0.9}}]
    warning = task.inversion_warning({"pareto": front})
    assert "energy 0.160" in warning and "knn" not in warning
    front[0]["metrics"]["auroc_energy"] = 0.6
    assert task.inversion_warning({"pareto": front}) is None
