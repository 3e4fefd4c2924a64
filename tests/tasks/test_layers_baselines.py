"""Task `layers`' practitioner baselines: surgical fine-tuning and Auto-RGN (Lee et al.,
ICLR 2023), random masks under the search's schedule, and each baseline's compute."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from evotune.cli import main
from evotune.errors import UserError
from evotune.train.auto_rgn import AutoRgnRun, normalised, relative_gradient_norms
from evotune.train.finetune import TrainingRun, TrainSettings
from tiny_configs import task_from, tiny_layers, updated

BASE = tiny_layers(baselines=["surgical", "auto_rgn"], search={"population": 3, "generations": 1})


def raw_config(**task):
    return updated(BASE, "task", **task)


def make_task(**task):
    return task_from(raw_config(**task))


def test_surgical_candidates_are_one_stage_each_past_the_frozen_prefix():
    task = make_task()
    masks = task.baseline_genomes(0, np.random.default_rng(0))["surgical"]
    assert masks.tolist() == [[1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0],
                              [0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1, 1]]  # fmt: skip
    assert len(make_task(frozen_prefix=2).baseline_genomes(0, None)["surgical"]) == 3


def test_surgical_on_one_gene_group_is_bad_input(tmp_path, capsys):
    with pytest.raises(UserError, match="task.baselines: surgical"):
        make_task(frozen_prefix=6)
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw_config(frozen_prefix=6)))
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "-q"]) == 2
    assert "surgical" in capsys.readouterr().err


def test_an_unknown_baseline_is_bad_input(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw_config(baselines=["surgicall"])))
    assert main(["validate", str(config)]) == 2
    assert "task.baselines" in capsys.readouterr().err


def test_relative_gradient_norms_are_normalised_to_one():
    w = [torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(9))]
    ratios = relative_gradient_norms(w, [torch.full((4,), 0.5), None])
    assert ratios == [pytest.approx(0.5), 0.0]
    assert normalised([0.2, 0.1, 0.0]) == [1.0, 0.5, 0.0]
    assert normalised([0.0, 0.0]) == [1.0, 1.0]


def test_auto_rgn_sets_each_tensors_learning_rate_every_epoch():
    torch.manual_seed(0)
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    settings = TrainSettings(epochs=2, batch_size=8, lr=0.05, patience=None)

    def model():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

    net = model()
    run = AutoRgnRun(net, list(net.parameters()), (x, y), (x, y), settings, seed=7)
    run.advance(2)
    lrs = [g["lr"] for g in run.optimizer.param_groups]
    assert len(lrs) == 4 and max(lrs) == pytest.approx(0.05)
    assert all(0 <= lr <= 0.05 for lr in lrs) and min(lrs) < 0.05
    other = model()
    plain = TrainingRun(other, list(other.parameters()), (x, y), (x, y), settings, seed=7)
    plain.advance(2)
    assert run.result().history != plain.result().history


def test_baselines_run_journal_and_record_their_compute(tmp_path):
    raw = raw_config(baselines=["full", "surgical", "auto_rgn", "random", "random_full"])
    raw["fitness"].update(schedule="successive_halving", min_epochs=1, eta=2)
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw))
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    baselines = summary["baselines"]
    assert set(baselines) == {"full", "surgical", "auto_rgn", "random", "random_full"}
    for entry in baselines.values():
        assert entry["epochs_trained"] > 0 and entry["seconds"] > 0
        assert "test_accuracy" in entry["metrics"]
        assert entry["metrics"]["fidelity"] == 1.0  # the reported best is a full value
    assert baselines["surgical"]["metrics"]["candidates"] == 4
    assert baselines["auto_rgn"]["genome"] == baselines["full"]["genome"]
    lines = [json.loads(line) for line in (run / "baselines.jsonl").read_text().splitlines()]
    kinds = {line["kind"] for line in lines}
    assert {"eval:auto_rgn", "test:auto_rgn", "eval", "test", "eval:surgical"} <= kinds
    # random masks under the search's schedule: halving ranks the candidates together
    assert "rung" in baselines["random"]["metrics"]
    # every other baseline trains each candidate the full budget (2 epochs; no early stop)
    for line in lines:
        if line["kind"] in ("eval:surgical", "eval:random_full", "eval:full"):
            assert line["metrics"]["fidelity"] == 1.0 and "rung" not in line["metrics"]
    assert baselines["surgical"]["epochs_trained"] == 4 * 2
    assert main(["resume", str(run), "-q"]) == 0  # nothing evaluated again
    again = [json.loads(line) for line in (run / "baselines.jsonl").read_text().splitlines()]
    assert len(again) == len(lines)


def test_random_masks_get_the_searchs_time_by_default(tmp_path):
    raw = raw_config(baselines=["random"])
    raw["search"] = {"population": 4, "generations": 2}
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw))
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    journal = [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()]
    search = sum(e["seconds"] for e in journal if not e.get("cached"))
    random = summary["baselines"]["random"]
    chunk = -(-summary["evaluations"] // 2)  # a generation's worth of evaluations at a time
    assert random["metrics"]["candidates"] % chunk == 0
    assert random["seconds"] >= search  # (256 masks: a draw brings no new one long after)
    entries = [json.loads(line) for line in (run / "baselines.jsonl").read_text().splitlines()]
    drawn = [e for e in entries if e["kind"] == "eval"]
    assert sum(e["seconds"] for e in drawn) - search < max(e["seconds"] for e in drawn) * chunk
