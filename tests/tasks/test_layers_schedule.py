"""Task `layers` under the shared schedule (train/schedule.py): successive halving and
repeats, as `hparams` has them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evotune.cli import main
from evotune.engine.problem import Objective
from evotune.engine.summary import best_entry
from evotune.report.noise import noise_rows
from evotune.report.rundata import load_run
from evotune.train.schedule import repeat_seeds
from tiny_configs import task_from, tiny_layers, updated

BASE = tiny_layers(fitness={"epochs": 4, "patience": None})


def raw_config(**fitness):
    return updated(BASE, "fitness", **fitness)


def make_task(**fitness):
    return task_from(raw_config(**fitness))


def test_halving_keeps_full_budget_values_exactly_at_the_last_rung():
    full = make_task()
    halving = make_task(schedule="successive_halving", min_epochs=1, eta=2)
    assert halving.schedule.budgets == [1, 2, 4] and halving.whole_generation
    assert not full.whole_generation and full.genomes_per_call == 1
    genomes = full.space.sample(6, np.random.default_rng(1))
    seeds = np.arange(6) + 100
    exact = full.evaluate(genomes, seeds)
    fast = halving.evaluate(genomes, seeds)
    assert sum(e.metrics["epochs"] for e in fast) < sum(e.metrics["epochs"] for e in exact)
    assert [e.metrics["rung"] for e in fast].count(2) == 2  # 6 -> 3 -> 2 reach 4 epochs
    assert all(e.metrics["fidelity"] == 1.0 and "rung" not in e.metrics for e in exact)
    for quick, slow in zip(fast, exact):
        if quick.metrics["fidelity"] == 1.0:
            assert quick.fitness == slow.fitness  # the same training, to the last bit
            assert quick.metrics["epochs"] == 4
        else:  # a best-so-far accuracy: never better than the full-budget one
            assert quick.fitness[0] <= slow.fitness[0]
            assert quick.metrics["epochs"] == quick.metrics["epochs_trained"] < 4


def test_a_lower_fidelity_value_never_wins_a_tie_for_the_best():
    objectives = (Objective("accuracy", "max"),)
    entries = [
        {"hash": "0a", "fitness": [0.9], "metrics": {"fidelity": 0.25}},
        {"hash": "ff", "fitness": [0.9], "metrics": {"fidelity": 1.0}},
    ]
    assert best_entry(objectives, entries)["hash"] == "ff"


def test_repeats_report_the_mean_over_derived_seeds_and_its_std():
    assert repeat_seeds(5, 3)[0] == 5 and repeat_seeds(5, 3) == repeat_seeds(5, 3)
    assert len(set(repeat_seeds(5, 3))) == 3
    plain = make_task(epochs=2)
    twice = make_task(epochs=2, repeats=2)
    genome = np.ones((1, plain.space.n_genes), dtype=np.uint8)
    one = plain.evaluate(genome, np.array([7]))[0]
    assert "fitness_std" not in one.metrics  # repeats: 1 is the plain evaluation
    seeds = repeat_seeds(7, 2)
    each = [plain.evaluate(genome, np.array([s]))[0].fitness[0] for s in seeds]
    both = twice.evaluate(genome, np.array([7]))[0]
    assert both.fitness[0] == pytest.approx(np.mean(each))
    assert both.metrics["fitness_std"] == pytest.approx(np.std(each))
    assert both.metrics["repeats"] == 2 and both.metrics["epochs_trained"] == 4
    assert one.fitness[0] == each[0]


def test_repeats_with_halving_rank_genomes_by_their_mean():
    task = make_task(schedule="successive_halving", min_epochs=1, eta=2, repeats=2)
    genomes = task.space.sample(4, np.random.default_rng(2))
    results = task.evaluate(genomes, np.arange(4) + 10)
    assert [e.metrics["rung"] for e in results].count(2) == 1
    assert all(e.metrics["epochs_trained"] == 2 * e.metrics["epochs"] for e in results)


def test_repeats_below_one_is_bad_input(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw_config(repeats=0)))
    assert main(["validate", str(config)]) == 2
    assert "fitness.repeats" in capsys.readouterr().err


@pytest.mark.parametrize("key,value", [("min_epochs", 2), ("eta", 2)])
def test_halving_keys_without_halving_are_bad_input(tmp_path, capsys, key, value):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw_config(**{key: value})))  # schedule: full (default)
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{key} applies to schedule: successive_halving" in err and "Traceback" not in err
    config.write_text(json.dumps(raw_config(schedule="successive_halving", **{key: value})))
    assert main(["validate", str(config)]) == 0


def test_a_run_with_halving_and_repeats_reports_spread_beside_seed_noise(tmp_path):
    raw = raw_config(epochs=2, schedule="successive_halving", min_epochs=1, eta=2, repeats=2)
    raw["search"] = {"population": 4, "generations": 2}
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw))
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    entries = load_run(run).journal
    assert all({"fidelity", "rung", "epochs", "fitness_std"} <= set(e["metrics"]) for e in entries)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["metrics"]["fidelity"] == 1.0
    rows = noise_rows(load_run(run))
    assert [r["generation"] for r in rows] == [0, 1]
    assert all(r["noise"] >= 0 and r["spread"] >= 0 for r in rows)
    assert "Selection signal" in (run / "report.html").read_text()


@pytest.mark.parametrize("halving", [True, False])
def test_repeat_elites_confirms_elites_at_the_full_budget(tmp_path, halving):
    schedule = {"schedule": "successive_halving", "min_epochs": 1, "eta": 2} if halving else {}
    raw = raw_config(repeats=2, repeat="elites", **schedule)
    raw["search"] = {"population": 4, "generations": 2, "elitism": 1}
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw))
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    lines = [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()]
    confirms = [e for e in lines if e.get("confirms")]
    assert confirms and all(e["metrics"]["fidelity"] == 1.0 for e in confirms)
    assert all("rung" not in e["metrics"] for e in confirms)  # genome by genome
    assert all(e["metrics"].get("repeats", 1) == 1 for e in lines)  # one seed each
    hashes = [e["hash"] for e in confirms]
    assert len(hashes) == len(set(hashes))  # repeats 2: one more evaluation, once
    first = {e["hash"]: e for e in lines if not e["cached"] and not e.get("confirms")}
    assert set(hashes) <= set(first)
    if not halving:  # every first value is a full one: each confirmed elite has a noise
        rows = noise_rows(load_run(run))
        assert rows and {r["generation"] for r in rows} <= {e["generation"] for e in confirms}


@pytest.mark.parametrize(
    "fitness,search,message",
    [({"repeats": 1, "repeat": "elites"}, {}, "repeats: 2 or more"),
     ({"repeats": 2, "repeat": "elites"}, {"algorithm": "annealing"}, "repeat: elites")],
)  # fmt: skip
def test_repeat_elites_without_elites_is_bad_input(tmp_path, capsys, fitness, search, message):
    raw = raw_config(**fitness)
    raw.setdefault("search", {}).update(search)
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw))
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
