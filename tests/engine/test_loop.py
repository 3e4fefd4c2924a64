"""The run loop: fitness cache, stop rules, files, checkpoint and resume (in process)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evotune.engine.annealing import RandomSearch
from evotune.engine.ga import GeneticAlgorithm
from evotune.engine.loop import CHECKPOINT, SearchLoop, StopRules
from evotune.engine.operators import CROSSOVER, MUTATION, SELECTION
from evotune.engine.problem import Evaluation, Objective
from evotune.engine.spaces import BinarySpace
from evotune.engine.state import load_checkpoint
from evotune.errors import UserError
from evotune.executors import LocalExecutor


class CountingOnes:
    """A problem that counts ones and remembers every genome and seed it evaluated."""

    def __init__(self, length: int, objectives: int = 1) -> None:
        self.space = BinarySpace(length)
        names = [("ones", "max"), ("zeros", "min")][:objectives]
        self.objectives = tuple(Objective(n, d) for n, d in names)
        self.genomes_per_call = None
        self.calls: list[tuple[str, int]] = []

    def evaluate(self, genomes, seeds):
        self.calls += [(self.space.hash(g), int(s)) for g, s in zip(genomes, seeds)]
        ones = genomes.sum(axis=1).astype(float)
        rows = [(o,) if len(self.objectives) == 1 else (o, o) for o in ones]
        return [Evaluation(r, {"ones": int(r[0])}) for r in rows]

    def reference_point(self):
        return None


def make_loop(tmp_path, problem, stop, algorithm="ga", seed=0, chunk_size=None, population=6):
    rng = np.random.default_rng(seed)
    if algorithm == "random":
        algo = RandomSearch(problem.space, rng, population)
    else:
        algo = GeneticAlgorithm(
            problem.space,
            rng,
            population,
            SELECTION.build("tournament", "s"),
            CROSSOVER.build("uniform", "c"),
            MUTATION.build("bit_flip", "m"),
            elitism=1,
        )
    return SearchLoop(problem, algo, rng, tmp_path, seed, stop, LocalExecutor(chunk_size))


def journal(run_dir):
    lines = (run_dir / "journal.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def test_duplicates_are_evaluated_once_and_marked_cached(tmp_path):
    problem = CountingOnes(length=3)  # 8 genomes only: duplicates are certain
    make_loop(tmp_path, problem, StopRules(generations=6), algorithm="random").run()
    entries = journal(tmp_path)
    fresh = [e for e in entries if not e["cached"]]
    assert len(fresh) == len({e["hash"] for e in entries}) == len(problem.calls)
    first = {e["hash"]: e["fitness"] for e in fresh}
    assert any(e["cached"] for e in entries)
    assert all(e["fitness"] == first[e["hash"]] for e in entries)


def test_max_evaluations_is_exact_and_counts_only_fresh_evaluations(tmp_path):
    problem = CountingOnes(length=30)
    summary = make_loop(tmp_path, problem, StopRules(max_evaluations=20), population=7).run()
    assert summary["evaluations"] == 20 == len(problem.calls)
    assert summary["stopped_by"] == "max_evaluations"


def test_target_stops_the_run(tmp_path):
    summary = make_loop(tmp_path, CountingOnes(8), StopRules(generations=500, target=8)).run()
    assert summary["stopped_by"] == "target"
    assert summary["best"]["fitness"] == [8.0]
    assert summary["generations"] < 500


def test_one_generation_record_per_generation_and_elitist_best_never_drops(tmp_path):
    make_loop(tmp_path, CountingOnes(40), StopRules(generations=12)).run()
    records = [
        json.loads(line) for line in (tmp_path / "generations.jsonl").read_text().splitlines()
    ]
    assert [r["generation"] for r in records] == list(range(12))
    best = [r["best"][0] for r in records]
    assert best == sorted(best)
    assert all(r["hypervolume"] is None for r in records)


def test_hypervolume_is_recorded_for_several_objectives(tmp_path):
    from evotune.engine.nsga2 import NSGA2

    problem = CountingOnes(10, objectives=2)
    rng = np.random.default_rng(0)
    algo = NSGA2(
        problem.space,
        rng,
        6,
        SELECTION.build("tournament", "s"),
        CROSSOVER.build("uniform", "c"),
        MUTATION.build("bit_flip", "m"),
    )
    SearchLoop(problem, algo, rng, tmp_path, 0, StopRules(generations=3), LocalExecutor()).run()
    records = [
        json.loads(line) for line in (tmp_path / "generations.jsonl").read_text().splitlines()
    ]
    assert all(r["hypervolume"] is not None and r["hypervolume"] >= 0 for r in records)


def test_evaluation_seeds_depend_on_genome_not_on_batching(tmp_path):
    a, b = CountingOnes(12), CountingOnes(12)
    make_loop(tmp_path / "a", a, StopRules(generations=4), chunk_size=None).run()
    make_loop(tmp_path / "b", b, StopRules(generations=4), chunk_size=1).run()
    assert dict(a.calls) == dict(b.calls)


def test_checkpoint_is_one_file_loadable_without_pickle(tmp_path):
    make_loop(tmp_path, CountingOnes(10), StopRules(generations=3)).run()
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["checkpoint.npz"]
    meta, arrays = load_checkpoint(tmp_path / CHECKPOINT)
    assert meta["generation"] == 3
    assert arrays["algorithm.genomes"].shape == (6, 10)


def test_resume_extends_a_finished_run_exactly(tmp_path):
    make_loop(tmp_path / "full", CountingOnes(30), StopRules(generations=8)).run()
    make_loop(tmp_path / "split", CountingOnes(30), StopRules(generations=3)).run()
    loop = make_loop(tmp_path / "split", CountingOnes(30), StopRules(generations=8))
    loop.resume()
    loop.run()
    assert journal(tmp_path / "split") == journal(tmp_path / "full")


def test_resume_after_a_torn_journal_line_replays_the_generation(tmp_path):
    make_loop(tmp_path / "full", CountingOnes(30), StopRules(generations=5)).run()
    make_loop(tmp_path / "cut", CountingOnes(30), StopRules(generations=3)).run()
    # Simulate a kill during generation 3: two finished lines and one torn line.
    full = (tmp_path / "full" / "journal.jsonl").read_text().splitlines()
    done = len((tmp_path / "cut" / "journal.jsonl").read_text().splitlines())
    with open(tmp_path / "cut" / "journal.jsonl", "a") as handle:
        handle.write("\n".join(full[done : done + 2]) + "\n" + full[done + 2][:25])
    problem = CountingOnes(30)
    loop = make_loop(tmp_path / "cut", problem, StopRules(generations=5))
    loop.resume()
    loop.run()
    assert journal(tmp_path / "cut") == journal(tmp_path / "full")
    later = [e for e in journal(tmp_path / "full")[done:] if not e["cached"]]
    assert len(problem.calls) == len(later) - 2  # the two journaled ones were not recomputed


class RankedTogether(CountingOnes):
    """A whole-generation problem: a genome's value depends on how many share its call
    (as with successive halving, where the call's size sets the rungs)."""

    whole_generation = True

    def evaluate(self, genomes, seeds):
        return [
            Evaluation((e.fitness[0] + len(genomes),)) for e in super().evaluate(genomes, seeds)
        ]


def test_a_whole_generation_cut_short_is_evaluated_again_as_a_whole(tmp_path):
    make_loop(tmp_path / "full", RankedTogether(30), StopRules(generations=3)).run()
    make_loop(tmp_path / "cut", RankedTogether(30), StopRules(generations=2)).run()
    full = (tmp_path / "full" / "journal.jsonl").read_text().splitlines()
    done = len((tmp_path / "cut" / "journal.jsonl").read_text().splitlines())
    with open(tmp_path / "cut" / "journal.jsonl", "a") as handle:  # a torn write
        handle.write("\n".join(full[done : done + 2]) + "\n" + full[done + 2][:25])
    loop = make_loop(tmp_path / "cut", RankedTogether(30), StopRules(generations=3))
    loop.resume()
    loop.run()
    assert journal(tmp_path / "cut") == journal(tmp_path / "full")


def test_resume_refuses_a_different_genome_layout(tmp_path):
    make_loop(tmp_path, CountingOnes(10), StopRules(generations=2)).run()
    with pytest.raises(UserError, match="genome layout differs"):
        make_loop(tmp_path, CountingOnes(11), StopRules(generations=4)).resume()


def test_a_run_without_its_checkpoint_is_rebuilt_from_the_journal_alone(tmp_path):
    make_loop(tmp_path / "full", CountingOnes(30), StopRules(generations=6)).run()
    make_loop(tmp_path / "cut", CountingOnes(30), StopRules(generations=4)).run()
    (tmp_path / "cut" / CHECKPOINT).unlink()  # damaged and moved away
    problem = CountingOnes(30)
    loop = make_loop(tmp_path / "cut", problem, StopRules(generations=6))
    loop.resume()
    loop.run()
    assert journal(tmp_path / "cut") == journal(tmp_path / "full")
    fresh = [e for e in journal(tmp_path / "full") if e["generation"] >= 4 and not e["cached"]]
    assert len(problem.calls) == len(fresh)  # the first four generations came from the journal


def test_a_damaged_checkpoint_says_how_to_recover(tmp_path):
    make_loop(tmp_path, CountingOnes(10), StopRules(generations=2)).run()
    path = tmp_path / CHECKPOINT
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(UserError, match=r"checkpoint.npz is damaged .* journal.jsonl"):
        make_loop(tmp_path, CountingOnes(10), StopRules(generations=4)).resume()


def test_resume_refuses_a_journal_that_lost_lines(tmp_path):
    make_loop(tmp_path, CountingOnes(10), StopRules(generations=3)).run()
    (tmp_path / "journal.jsonl").unlink()
    with pytest.raises(UserError, match=r"holds 0 evaluations of the \d+ the checkpoint counted"):
        make_loop(tmp_path, CountingOnes(10), StopRules(generations=4)).resume()
