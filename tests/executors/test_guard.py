"""Failed evaluations with the local executor: journaled, not cached, counted, and a
run stopped by too many of them resumes. (The same with Ray: test_ray.py.)"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from faulty_tasks import comparable, journal_lines, register, write

from evotune.cli import main
from evotune.engine.annealing import RandomSearch
from evotune.engine.ga import GeneticAlgorithm
from evotune.engine.loop import SearchLoop, StopRules
from evotune.engine.operators import CROSSOVER, MUTATION, SELECTION
from evotune.engine.problem import Evaluation, Objective
from evotune.engine.spaces import BinarySpace
from evotune.errors import RunError, UserError
from evotune.executors import LocalExecutor
from evotune.executors.guard import evaluate_guarded

RAISING = """\
task: {name: faulty_onemax, length: 30}
search: {population: 8, generations: 6, seed: 1}
fitness: {fail_prefix: '11'}
executor: {chunk_size: 3, max_failures: null}
"""
BROKEN = """\
task: {name: faulty_onemax, length: 30}
search: {population: 8, generations: 4, seed: 2}
fitness: {broken_flag: %s}
executor: {chunk_size: 1, max_failures: 3}
output: {report: false}
"""


@pytest.fixture
def faulty(monkeypatch):
    register(monkeypatch)


class FirstBitFails:
    """Counts ones; a genome whose first bit is 1 raises. Remembers every call."""

    def __init__(self, length: int = 3) -> None:
        self.space = BinarySpace(length)
        self.objectives = (Objective("ones", "max"),)
        self.genomes_per_call = None
        self.calls: list[str] = []

    def evaluate(self, genomes, seeds):
        self.calls += [self.space.hash(g) for g in genomes]
        if genomes[:, 0].any():
            raise MemoryError("out of memory")
        return [Evaluation((float(g.sum()),)) for g in genomes]

    def reference_point(self):
        return None


def test_a_raising_batch_is_evaluated_again_genome_by_genome():
    problem = FirstBitFails(length=4)
    genomes = np.array([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1]], dtype=np.int8)
    results = evaluate_guarded(problem, genomes, np.zeros(3, dtype=np.int64))
    assert [r.fitness for r in results][::2] == [(2.0,), (1.0,)]
    assert math.isnan(results[1].fitness[0])
    assert results[1].error.startswith("MemoryError: out of memory (test_guard.py:")
    assert results[0].error is None and results[2].error is None


def test_a_whole_generation_task_is_never_split_into_single_genomes():
    """Alone, a genome would get another schedule (successive halving: the full budget),
    so a raising whole-generation batch fails as a whole instead of being re-run."""
    problem = FirstBitFails(length=4)
    problem.whole_generation = True
    genomes = np.array([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1]], dtype=np.int8)
    results = evaluate_guarded(problem, genomes, np.zeros(3, dtype=np.int64))
    assert len(problem.calls) == 3  # one call, not three more
    assert all(r.error.startswith("MemoryError") for r in results)


def test_executors_pass_a_whole_generation_in_one_call_whatever_their_chunk():
    problem = FirstBitFails(length=2)
    problem.genomes_per_call = 1
    problem.whole_generation = True
    genomes = np.zeros((5, 2), dtype=np.int8)
    chunks = [c for c, _, _ in LocalExecutor(chunk_size=2).map(problem, genomes, np.zeros(5))]
    assert [list(c) for c in chunks] == [[0, 1, 2, 3, 4]]


def test_bad_input_raised_by_a_task_is_not_a_failed_evaluation():
    problem = FirstBitFails()
    problem.evaluate = lambda genomes, seeds: (_ for _ in ()).throw(UserError("data: no file"))
    with pytest.raises(UserError, match="data: no file"):
        evaluate_guarded(problem, np.zeros((2, 3), dtype=np.int8), np.zeros(2, dtype=np.int64))


def test_a_wrong_number_of_results_is_a_failure_not_a_crash():
    problem = FirstBitFails()
    problem.evaluate = lambda genomes, seeds: [Evaluation((1.0, 2.0))] * len(genomes)
    results = evaluate_guarded(problem, np.zeros((2, 3), dtype=np.int8), np.zeros(2, np.int64))
    assert all("returned 2 fitness values, expected 1 (ones)" in r.error for r in results)


def test_failed_genomes_are_not_cached_but_evaluated_again_when_asked_again(tmp_path):
    problem = FirstBitFails(length=3)  # 8 genomes, 4 of them fail: repeats are certain
    rng = np.random.default_rng(0)
    algorithm = RandomSearch(problem.space, rng, 6)
    loop = SearchLoop(
        problem, algorithm, rng, tmp_path, 0, StopRules(generations=6), LocalExecutor()
    )
    summary = loop.run()
    entries = journal_lines(tmp_path)
    failed = [e for e in entries if "error" in e]
    assert failed and all(e["genome"][0] == "1" and e["fitness"] == ["nan"] for e in failed)
    fresh_failures = [e["hash"] for e in failed if not e["cached"]]
    assert len(fresh_failures) > len(set(fresh_failures))  # retried in later generations
    for key in set(fresh_failures):  # ... but once per generation: repeats copy the failure
        per_generation = {e["generation"] for e in failed if e["hash"] == key and not e["cached"]}
        assert len(per_generation) == fresh_failures.count(key)
    successes = [e["hash"] for e in entries if "error" not in e and not e["cached"]]
    assert len(successes) == len(set(successes))  # a success is evaluated once
    assert summary["evaluations"] == sum(1 for e in entries if not e["cached"])
    assert summary["best"]["genome"][0] == "0"


def test_a_run_with_raising_evaluations_goes_on_and_reports(tmp_path, faulty, capsys):
    config = write(tmp_path, RAISING)
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "-q"]) == 0
    entries = journal_lines(tmp_path / "run")
    failed = [e for e in entries if "error" in e]
    assert failed and all(e["genome"].startswith("11") for e in failed)
    assert all(e["error"].startswith("ValueError: unlucky genome") for e in failed)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert not summary["best"]["genome"].startswith("11")
    assert math.isfinite(summary["best"]["fitness"][0])
    assert summary["evaluations"] == sum(1 for e in entries if not e["cached"])
    assert (tmp_path / "run" / "report.html").exists()
    assert "best: ones=" in capsys.readouterr().out


def test_too_many_failures_in_a_row_stop_the_run_which_resumes_once_fixed(tmp_path, faulty, capsys):
    flag = tmp_path / "broken"
    flag.touch()
    config = write(tmp_path, BROKEN % flag)
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 3 evaluations failed in a row (executor.max_failures: 3)")
    assert "RuntimeError: broken while" in err and f"evotune resume {run}" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert len(journal_lines(run)) == 3 and not (run / "summary.json").exists()
    flag.unlink()
    assert main(["resume", str(run), "-q"]) == 0
    clean = write(tmp_path, BROKEN % (tmp_path / "never"), "clean.yaml")
    assert main(["run", str(clean), "--out", str(tmp_path / "clean"), "-q"]) == 0
    assert journal_lines(run) == journal_lines(tmp_path / "clean")  # line order too
    assert comparable(run) == comparable(tmp_path / "clean")


def test_resume_may_change_the_executor(tmp_path):
    config = write(tmp_path, "task: onemax\nsearch: {generations: 2}\noutput: {report: false}\n")
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    overrides = ["--set", "executor.chunk_size=3", "--set", "search.generations=3"]
    assert main(["resume", str(run), "-q", *overrides]) == 0
    assert json.loads((run / "summary.json").read_text())["generations"] == 3


def test_ray_executor_without_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    config = write(tmp_path, "task: onemax\nexecutor: {kind: ray}\n")
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "-q"]) == 2
    assert "pip install 'evotune[ray]'" in capsys.readouterr().err


class BreaksAfter:
    """Counts ones; once `broken_after` genomes have been evaluated, every one raises."""

    def __init__(self, broken_after: int | None = None) -> None:
        self.space = BinarySpace(20)
        self.objectives = (Objective("ones", "max"),)
        self.genomes_per_call = 1
        self.broken_after, self.count = broken_after, 0

    def evaluate(self, genomes, seeds):
        self.count += len(genomes)
        if self.broken_after is not None and self.count > self.broken_after:
            raise RuntimeError("device lost")
        return [Evaluation((float(g.sum()),)) for g in genomes]

    def reference_point(self):
        return None


def ga_loop(run_dir, problem, generations, max_failures=None):
    rng = np.random.default_rng(4)
    algorithm = GeneticAlgorithm(
        problem.space,
        rng,
        6,
        SELECTION.build("tournament", "s"),
        CROSSOVER.build("uniform", "c"),
        MUTATION.build("bit_flip", "m"),
        elitism=1,
    )
    stop = StopRules(generations=generations)
    return SearchLoop(
        problem, algorithm, rng, run_dir, 0, stop, LocalExecutor(), max_failures=max_failures
    )


def test_a_failure_stop_after_a_checkpoint_resumes_to_the_clean_result(tmp_path):
    ga_loop(tmp_path / "clean", BreaksAfter(), generations=4).run()
    run = tmp_path / "run"
    ga_loop(run, BreaksAfter(), generations=2).run()
    broken = ga_loop(run, BreaksAfter(broken_after=1), generations=4, max_failures=2)
    broken.resume()
    with pytest.raises(RunError, match="2 evaluations failed in a row"):
        broken.run()
    stopped = journal_lines(run)
    assert [e["generation"] for e in stopped if "error" in e] == [2, 2]
    assert sum(1 for e in stopped if e["generation"] == 2 and "error" not in e) == 1
    fixed = ga_loop(run, BreaksAfter(), generations=4)
    fixed.resume()
    assert (
        fixed.run()["evaluations"]
        == json.loads((tmp_path / "clean" / "summary.json").read_text())["evaluations"]
    )
    assert sorted(map(str, journal_lines(run))) == sorted(
        map(str, journal_lines(tmp_path / "clean"))
    )
    assert comparable(run) == comparable(tmp_path / "clean")
