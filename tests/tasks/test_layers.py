"""Task `layers`: fitness, the prefix cache, baselines, export and the demo path."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from evotune.cli import main
from evotune.config import resolve
from evotune.models import load_checkpoint
from evotune.report.genome_plots import layer_map_grid
from evotune.report.rundata import load_run
from tiny_configs import tiny_layers

BASE = tiny_layers(baselines=["full", "head", "last_k", "random"])


def make_task(**fitness):
    raw = json.loads(json.dumps(BASE))
    raw["fitness"].update(fitness)
    config = resolve(raw)
    return config.task_class.from_config(config)


def test_genome_is_one_bit_per_gene_and_mask_sets_trainable_params():
    task = make_task()
    n = task.space.n_genes
    assert n == len(task.template.genes) == 8
    head_only = task.evaluate(np.zeros((1, n), dtype=np.uint8), np.array([1]))[0]
    everything = task.evaluate(np.ones((1, n), dtype=np.uint8), np.array([1]))[0]
    total = sum(p.numel() for p in task.template.parameters())
    head = sum(p.numel() for p in task.template.head.parameters())
    assert everything.metrics["trainable_params"] == total
    assert head_only.metrics["trainable_params"] == head


def test_fitness_depends_on_genome_and_seed_only():
    task = make_task()
    genomes = task.space.sample(3, np.random.default_rng(0))
    seeds = np.array([11, 12, 13])
    forward = task.evaluate(genomes, seeds)
    backward = task.evaluate(genomes[::-1], seeds[::-1])[::-1]
    assert [e.fitness for e in forward] == [e.fitness for e in backward]


def test_prefix_cache_gives_the_same_fitness_as_full_training():
    task = make_task(cache=True)
    genome = np.array([0, 0, 0, 0, 1, 0, 1, 1], dtype=np.uint8)  # 2 frozen stages
    _, cached, _ = task.train_genome(genome, seed=5)
    assert task.cache.misses == 1  # the cache was really used
    _, plain, _ = task.train_genome(genome, seed=5, use_cache=False)
    for a, b in zip(cached.history, plain.history, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=1e-9)


def test_frozen_prefix_weights_do_not_change_and_trainable_ones_do():
    task = make_task()
    genome = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=np.uint8)
    net, _, _ = task.train_genome(genome, seed=3)
    before = dict(task.template.named_parameters())
    for name, param in net.named_parameters():
        if name.startswith("stages.0"):
            assert param.equal(before[name]), name
        if name.startswith("stages.3"):
            assert not param.equal(before[name]), name


def test_seed_preset_run_with_baselines_export_and_report(tmp_path, capsys):
    config = tmp_path / "layers.yaml"
    raw = json.loads(json.dumps(BASE))
    raw["search"] = {"preset": "seed", "population": 6, "elitism": 3, "generations": 3}
    raw["task"]["baseline_budget"] = "evaluations"  # as many random masks as evaluations
    config.write_text(json.dumps(raw))  # JSON is YAML
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["baselines"]) == {"full", "head", "last_k", "random"}
    assert summary["baselines"]["full"]["genome"] == "1" * 8
    assert summary["baselines"]["random"]["metrics"]["candidates"] == summary["evaluations"]
    assert "test_accuracy" in summary["best"]["metrics"]
    assert "random" in capsys.readouterr().out  # the comparison table
    grid = layer_map_grid(load_run(run))
    assert grid.shape == (3, 8)
    assert (run / "plots" / "layer_map.png").exists()
    assert (run / "plots" / "fitness_vs_params.png").exists()

    out = tmp_path / "best.safetensors"
    assert main(["export", str(run), "--out", str(out)]) == 0
    net, meta = load_checkpoint(out)
    assert meta["mask"] == summary["best"]["genome"]
    assert 0.0 <= meta["metrics"]["test_accuracy"] <= 1.0
    assert net.count_trainable() > 0


def test_second_objective_trainable_params_runs_nsga2(tmp_path):
    raw = json.loads(json.dumps(BASE))
    raw["task"] = {
        "name": "layers",
        "objectives": ["accuracy", "trainable_params"],
        "baselines": [],
    }
    raw["search"] = {"population": 4, "generations": 2}
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw))
    assert main(["run", str(config), "--out", str(tmp_path / "r"), "-q"]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["algorithm"] == "nsga2"
    assert [o["direction"] for o in summary["objectives"]] == ["max", "min"]


def test_frozen_prefix_beyond_the_genes_is_bad_input():
    raw = json.loads(json.dumps(BASE))
    raw["task"]["frozen_prefix"] = 99
    config = resolve(raw)
    with pytest.raises(Exception, match="task.frozen_prefix"):
        config.task_class.from_config(config)


def test_demo_path_finishes_with_a_small_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EVOTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("evotune.cli.DEMO_PRETRAIN_OVERRIDES", ["pretrain.epochs=2"])
    args = [
        "demo",
        "--out",
        str(tmp_path / "demo"),
        "-q",
        "--set",
        "search.population=4",
        "--set",
        "search.elitism=2",
        "--set",
        "search.generations=2",
        "--set",
        "fitness.epochs=2",
        "--set",
        "task.baselines=[full,head]",
    ]
    assert main(args) == 0
    assert (tmp_path / "cache" / "backbones").iterdir()
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert set(summary["baselines"]) == {"full", "head"}


def _fitness_by_hash(run):
    lines = [json.loads(x) for x in (run / "journal.jsonl").read_text().splitlines()]
    return [(e["hash"], e["fitness"], e["metrics"]["val_loss"]) for e in lines]


def test_an_untrained_backbone_is_the_same_in_every_process_and_export_reproduces_it(tmp_path):
    """weights: none draws the backbone from the run seed: a run in another process, and an
    export there, train the very network the search trained."""
    raw = json.loads(json.dumps(BASE))
    raw["task"]["baselines"] = []
    raw["search"] = {"population": 4, "generations": 2, "seed": 3}
    raw["output"] = {"report": False}
    config = tmp_path / "layers.yaml"
    config.write_text(json.dumps(raw))
    here, there = tmp_path / "here", tmp_path / "there"
    assert main(["run", str(config), "--out", str(here), "-q"]) == 0
    assert evotune_subprocess("run", str(config), "--out", str(there), "-q").returncode == 0
    assert _fitness_by_hash(here) == _fitness_by_hash(there)

    out = tmp_path / "best.safetensors"
    assert evotune_subprocess("export", str(here), "--out", str(out)).returncode == 0
    best = json.loads((here / "summary.json").read_text())["best"]
    assert load_checkpoint(out)[1]["metrics"]["val_accuracy"] == best["fitness"][0]


def evotune_subprocess(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evotune", *args], capture_output=True, text=True, timeout=300
    )


def test_export_refuses_bad_arguments_and_exports_an_unfinished_run(tmp_path, capsys):
    raw = json.loads(json.dumps(BASE))
    raw["task"]["baselines"] = []
    raw["search"] = {"population": 4, "generations": 1}
    raw["output"] = {"report": False}
    config = tmp_path / "layers.yaml"
    config.write_text(json.dumps(raw))
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    out = str(tmp_path / "m.safetensors")
    assert main(["export", str(run), "--out", out, "--epochs", "-3"]) == 2
    assert main(["export", str(run), "--out", out, "--pick", "knee"]) == 2
    err = capsys.readouterr().err
    assert "--epochs: expected a positive number of epochs, got -3" in err
    assert "--pick knee: the run has one objective (accuracy)" in err
    assert not (tmp_path / "m.safetensors").exists()
    best = json.loads((run / "summary.json").read_text())["best"]
    (run / "summary.json").unlink()  # as if killed before the end: the journal has it all
    assert main(["export", str(run), "--out", out]) == 0
    assert load_checkpoint(out)[1]["mask"] == best["genome"]


def test_skipped_files_are_said_on_the_console_and_kept_in_the_summary(tmp_path, capsys):
    from PIL import Image

    for k, name in enumerate(["a", "b"]):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(8):
            Image.new("L", (8, 8), color=60 * k + 20 + i).save(
                tmp_path / "images" / name / f"{i}.png"
            )
    (tmp_path / "images" / "a" / "broken.png").write_text("not an image")
    raw = json.loads(json.dumps(BASE))
    raw["task"]["baselines"] = []
    raw["data"] = {
        "source": "imagefolder",
        "path": str(tmp_path / "images"),
        "on_error": "skip",
        "split": {"val_fraction": 0.25, "test_fraction": 0.25},
    }
    raw["search"] = {"population": 2, "generations": 1}
    raw["output"] = {"report": False}
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw))
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "-q"]) == 0
    assert "note: skipped 1 bad file (first: " in capsys.readouterr().err
    notes = json.loads((tmp_path / "run" / "summary.json").read_text())["data_notes"]
    assert len(notes) == 1 and "broken.png" in notes[0]


def noise_folder(root, per_class=8, size=12):
    """RGB noise images, a different mean per class (every pixel matters)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(["a", "b", "c"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 150, size=(size, size, 3)) + 50 * k
            Image.fromarray(pixels.astype(np.uint8), "RGB").save(root / name / f"{i}.png")
    return root


def folder_task(path, in_memory, **fitness):
    raw = json.loads(json.dumps(BASE))
    raw["data"] = {
        "source": "imagefolder",
        "path": str(path),
        "in_memory": in_memory,
        "stream_workers": 1,
        "split": {"val_fraction": 0.25, "test_fraction": 0.25},
    }
    raw["fitness"].update(fitness, batch_size=5)
    config = resolve(raw)
    return config.task_class.from_config(config)


def test_streaming_from_disk_gives_the_in_memory_fitness(tmp_path):
    from evotune.data import Split, StreamedSplit

    folder = noise_folder(tmp_path / "images")
    memory, disk = folder_task(folder, True), folder_task(folder, False)
    assert isinstance(memory.splits["train"], Split)
    assert isinstance(disk.splits["train"], StreamedSplit)
    genomes = np.array(
        [[1] * 8, [0, 0, 0, 0, 1, 0, 1, 1], [0] * 8],  # whole net; cached prefixes
        dtype=np.uint8,
    )
    seeds = np.array([4, 5, 6])
    for task in (memory, disk):
        task.evaluations = task.evaluate(genomes, seeds)
    assert disk.cache.misses == 2  # the prefixes were computed from streamed batches
    for a, b in zip(memory.evaluations, disk.evaluations, strict=True):
        assert a.fitness == b.fitness
        assert {**a.metrics, "train_seconds": 0} == {**b.metrics, "train_seconds": 0}
    assert memory.test_metrics(genomes[1], 5) == disk.test_metrics(genomes[1], 5)


def test_a_spilled_prefix_cache_gives_the_same_fitness_as_full_training(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOTUNE_CACHE", str(tmp_path))
    task = make_task(cache=True, cache_gb=1e-9)  # no entry fits memory: each spills
    genome = np.array([0, 0, 0, 0, 1, 0, 1, 1], dtype=np.uint8)
    _, cached, _ = task.train_genome(genome, seed=5)
    assert task.cache.spills == 2 and task.cache.used(spilled=True) > 0
    _, plain, _ = task.train_genome(genome, seed=5, use_cache=False)
    for a, b in zip(cached.history, plain.history, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=1e-9)
