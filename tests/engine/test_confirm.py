"""`repeat: elites` in the run loop: a genome entering the GA's elites is evaluated again
from its derived seeds, once; its fitness becomes the mean; resume gives the same run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from engine.test_loop import CountingOnes, journal
from evotune.engine.annealing import RandomSearch
from evotune.engine.ga import GeneticAlgorithm
from evotune.engine.loop import SearchLoop, StopRules
from evotune.engine.operators import CROSSOVER, MUTATION, SELECTION
from evotune.engine.problem import Evaluation, evaluation_seed, repeat_seeds
from evotune.engine.replay import FitnessCache
from evotune.errors import UserError
from evotune.executors import LocalExecutor


class NoisyOnes(CountingOnes):
    """Ones plus seed noise in [0, 4): selection without repeats follows lucky seeds."""

    def __init__(self, length: int, confirmations: int = 2) -> None:
        super().__init__(length)
        self.confirmations = confirmations
        self.full_budget_calls = 0

    def evaluate(self, genomes, seeds):
        self.calls += [(self.space.hash(g), int(s)) for g, s in zip(genomes, seeds)]
        noise = [np.random.default_rng(int(s)).uniform(0, 4) for s in seeds]
        return [Evaluation((float(g.sum()) + n,), {"ones": int(g.sum())})
                for g, n in zip(genomes, noise)]  # fmt: skip

    def at_full_budget(self):
        self.full_budget_calls += 1
        return self


def make_loop(run_dir, problem, generations, seed=0, algorithm="ga"):
    rng = np.random.default_rng(seed)
    if algorithm == "random":
        algo = RandomSearch(problem.space, rng, 6)
    else:
        algo = GeneticAlgorithm(
            problem.space, rng, 6, SELECTION.build("tournament", "s"),
            CROSSOVER.build("uniform", "c"), MUTATION.build("bit_flip", "m"), elitism=2,
        )  # fmt: skip
    stop = StopRules(generations=generations)
    return SearchLoop(problem, algo, rng, run_dir, seed, stop, LocalExecutor(None))


def test_elites_are_confirmed_once_with_derived_seeds_and_keep_the_mean(tmp_path):
    problem = NoisyOnes(20)
    summary = make_loop(tmp_path, problem, generations=5).run()
    lines = journal(tmp_path)
    confirms = [e for e in lines if e.get("confirms")]
    assert confirms and problem.full_budget_calls > 0
    by_hash: dict[str, list[float]] = {}
    for e in confirms:
        by_hash.setdefault(e["hash"], []).append(e["fitness"][0])
    assert all(len(v) == 2 for v in by_hash.values())  # once: 2 further evaluations each
    first = {e["hash"]: e["fitness"][0] for e in lines if not e["cached"] and not e.get("confirms")}
    for key in by_hash:  # the seeds repeats: 3 would use, after its own
        seeds = repeat_seeds(evaluation_seed(0, key), 3)[1:]
        assert {s for h, s in problem.calls if h == key} >= set(seeds)
    best = summary["best"]
    assert best["hash"] in by_hash  # the best is an elite, confirmed
    values = [first[best["hash"]], *by_hash[best["hash"]]]
    assert best["fitness"][0] == pytest.approx(np.mean(values))
    assert best["metrics"]["repeats"] == 3
    assert best["metrics"]["fitness_std"] == pytest.approx(np.std(values))
    assert summary["evaluations"] == sum(1 for e in lines if not e["cached"])


def test_confirmed_losses_reach_the_algorithm(tmp_path):
    loop = make_loop(tmp_path, NoisyOnes(20), generations=2)
    loop.run()
    genomes, losses = loop.algorithm.population()
    for genome, loss in zip(genomes[:2], losses[:2]):
        entry = loop.archive[loop.problem.space.hash(genome)]
        assert "evaluations" in entry and loss[0] == pytest.approx(-entry["fitness"][0])
    assert list(losses[:, 0]) == sorted(losses[:, 0])  # re-sorted after the revision


def test_resume_mid_run_equals_an_uninterrupted_run(tmp_path):
    make_loop(tmp_path / "full", NoisyOnes(20), generations=6).run()
    make_loop(tmp_path / "split", NoisyOnes(20), generations=3).run()
    loop = make_loop(tmp_path / "split", NoisyOnes(20), generations=6)
    loop.resume()
    loop.run()
    assert journal(tmp_path / "split") == journal(tmp_path / "full")


def test_a_kill_during_confirmations_replays_them(tmp_path):
    make_loop(tmp_path / "full", NoisyOnes(20), generations=4).run()
    make_loop(tmp_path / "cut", NoisyOnes(20), generations=2).run()
    full = (tmp_path / "full" / "journal.jsonl").read_text().splitlines()
    done = len((tmp_path / "cut" / "journal.jsonl").read_text().splitlines())
    rest = [json.loads(line) for line in full[done:]]
    upto = next(i for i, e in enumerate(rest) if e.get("confirms")) + 1  # one confirmation
    with open(tmp_path / "cut" / "journal.jsonl", "a") as handle:
        handle.write("\n".join(full[done : done + upto]) + "\n")
    problem = NoisyOnes(20)
    loop = make_loop(tmp_path / "cut", problem, generations=4)
    loop.resume()
    loop.run()
    assert journal(tmp_path / "cut") == journal(tmp_path / "full")
    fresh = [e for e in rest if not e["cached"]]
    assert len(problem.calls) == len(fresh) - sum(1 for e in rest[:upto] if not e["cached"])


def test_two_processes_give_the_same_journal(tmp_path):
    script = (
        "import sys; from pathlib import Path; sys.path[:0] = [sys.argv[2]]\n"
        "from engine.test_confirm import NoisyOnes, make_loop\n"
        "make_loop(Path(sys.argv[1]), NoisyOnes(20), generations=4).run()\n"
    )
    tests = str(__import__("pathlib").Path(__file__).parents[1])
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name), tests], check=True)
    assert journal(tmp_path / "a") == journal(tmp_path / "b")
    assert any(e.get("confirms") for e in journal(tmp_path / "a"))


def test_an_algorithm_without_elites_is_refused():
    with pytest.raises(UserError, match="repeat: elites"):
        make_loop("unused", NoisyOnes(20), generations=2, algorithm="random")


def test_a_lower_fidelity_first_value_does_not_mix_with_full_budget_confirmations():
    cache = FitnessCache()
    line = {"hash": "a", "fitness": [0.5], "metrics": {"fidelity": 0.25, "rung": 0}}
    cache.remember(line)
    for value in (0.8, 0.9):
        cache.remember({"hash": "a", "fitness": [value], "metrics": {"fidelity": 1.0},
                        "confirms": True})  # fmt: skip
    entry = cache.known["a"]
    assert entry["fitness"] == [pytest.approx(0.85)] and cache.confirmed("a")
    assert entry["metrics"]["fidelity"] == 1.0 and entry["metrics"]["repeats"] == 2
    assert entry["metrics"]["fitness_std"] == pytest.approx(0.05)
    assert line["fitness"] == [0.5]  # the journal's own line is left as it was


class LuckyFirst(NoisyOnes):
    """Every genome's own seed is lucky (+10): a confirmed elite drops below the others,
    which then enter the kept set and must be confirmed too."""

    def evaluate(self, genomes, seeds):
        own = {evaluation_seed(0, self.space.hash(g)) for g in genomes}
        return [
            Evaluation((float(g.sum()) + 10.0 * (int(s) in own),), {})
            for g, s in zip(genomes, seeds)
        ]


def test_a_genome_let_into_the_kept_set_by_a_revision_is_confirmed_too(tmp_path):
    loop = make_loop(tmp_path, LuckyFirst(20), generations=3)
    loop.run()
    for genome in loop.algorithm.kept():
        assert loop.cache.confirmed(loop.problem.space.hash(genome))
    lines = journal(tmp_path)
    generation_0 = [e for e in lines if e["generation"] == 0 and e.get("confirms")]
    assert len({e["hash"] for e in generation_0}) > 2  # more rounds than the 2 elites
    indices = [e["index"] for e in lines if e["generation"] == 0]
    assert len(indices) == len(set(indices))


def test_confirmations_stay_within_max_evaluations(tmp_path):
    rng = np.random.default_rng(0)
    problem = NoisyOnes(20)
    algo = GeneticAlgorithm(
        problem.space, rng, 6, SELECTION.build("tournament", "s"),
        CROSSOVER.build("uniform", "c"), MUTATION.build("bit_flip", "m"), elitism=2,
    )  # fmt: skip
    stop = StopRules(max_evaluations=8)  # 6 asked, then room to confirm 1 elite of 2
    loop = SearchLoop(problem, algo, rng, tmp_path, 0, stop, LocalExecutor(None))
    summary = loop.run()
    assert summary["evaluations"] == 8
    assert summary["evaluations"] == sum(1 for e in journal(tmp_path) if not e["cached"])
