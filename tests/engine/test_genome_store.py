"""Large genomes: journaled as file references, files kept for the best, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evotune.engine.ga import GeneticAlgorithm
from evotune.engine.genome_store import GenomeStore, is_reference, load_genome
from evotune.engine.loop import SearchLoop, StopRules
from evotune.engine.operators import CROSSOVER, MUTATION, SELECTION
from evotune.engine.problem import Evaluation, Objective
from evotune.engine.spaces import GenomeError, RealVectorSpace
from evotune.executors import LocalExecutor

GENES = 3000


class Sphere:
    def __init__(self, external=None):
        self.space = RealVectorSpace(GENES, init_std=1.0, dtype="float32", external=external)
        self.objectives = (Objective("sq", "min"),)
        self.genomes_per_call = None

    def evaluate(self, genomes, seeds):
        return [Evaluation((float((g.astype(np.float64) ** 2).sum()),)) for g in genomes]


def make_loop(run_dir, problem, generations):
    rng = np.random.default_rng(0)
    algo = GeneticAlgorithm(
        problem.space,
        rng,
        6,
        SELECTION.build({"name": "truncation", "fraction": 0.5}, "s"),
        CROSSOVER.build({"name": "uniform", "swap": 0.2}, "c"),
        MUTATION.build({"name": "zero_out", "rate": 0.05}, "m"),
        elitism=3,
    )
    return SearchLoop(
        problem, algo, rng, run_dir, 0, StopRules(generations=generations), LocalExecutor()
    )


def lines(run_dir):
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]


def test_space_is_external_when_long():
    assert RealVectorSpace(2000).external and not RealVectorSpace(30).external
    assert not RealVectorSpace(2000, external=False).external
    assert RealVectorSpace(2000).describe() == RealVectorSpace(2000, external=False).describe()


def test_journal_holds_references_and_files_hold_the_genomes(tmp_path):
    summary = make_loop(tmp_path, Sphere(), 4).run()
    entries = lines(tmp_path)
    assert all(is_reference(e["genome"]) and e["genome"]["genes"] == GENES for e in entries)
    assert max(len(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()) < 400
    best = load_genome(Sphere().space, summary["best"]["genome"], tmp_path)
    assert Sphere().space.hash(best) == summary["best"]["hash"]
    assert float((best.astype(np.float64) ** 2).sum()) == pytest.approx(
        summary["best"]["fitness"][0]
    )


def test_only_the_best_is_kept(tmp_path):
    loop = make_loop(tmp_path, Sphere(), 5)
    summary = loop.run()
    kept = {p.stem for p in (tmp_path / "genomes").glob("*.npy")}
    assert kept == {summary["best"]["hash"]}
    assert len({e["hash"] for e in lines(tmp_path)}) > len(kept)  # others were deleted
    gone = next(e for e in lines(tmp_path) if e["hash"] not in kept)
    with pytest.raises(GenomeError, match="not found"):
        load_genome(loop.problem.space, gone["genome"], tmp_path)


def test_inline_space_journals_values(tmp_path):
    make_loop(tmp_path, Sphere(external=False), 2).run()
    assert isinstance(lines(tmp_path)[0]["genome"], list)
    assert not (tmp_path / "genomes").exists()


def test_resume_with_external_genomes_equals_an_uninterrupted_run(tmp_path):
    whole = make_loop(tmp_path / "a", Sphere(), 5).run()
    make_loop(tmp_path / "b", Sphere(), 3).run()
    text = (tmp_path / "b" / "journal.jsonl").read_text()
    (tmp_path / "b" / "journal.jsonl").write_text(text + text.splitlines()[0][:50])  # torn line
    loop = make_loop(tmp_path / "b", Sphere(), 5)
    loop.resume()
    resumed = loop.run()
    drop = ("wall_seconds",)
    assert {k: v for k, v in resumed.items() if k not in drop} == {
        k: v for k, v in whole.items() if k not in drop
    }
    strip = lambda es: [{k: v for k, v in e.items() if k != "seconds"} for e in es]  # noqa: E731
    assert strip(lines(tmp_path / "b")) == strip(lines(tmp_path / "a"))


def test_store_writes_once_and_load_checks_the_layout(tmp_path):
    store = GenomeStore(tmp_path)
    genome = np.arange(5, dtype=np.float32)
    ref = store.put("abc", genome)
    mtime = (tmp_path / ref["file"]).stat().st_mtime_ns
    assert store.put("abc", genome) == ref
    assert (tmp_path / ref["file"]).stat().st_mtime_ns == mtime
    assert np.array_equal(load_genome(RealVectorSpace(5, dtype="float32"), ref, tmp_path), genome)
    with pytest.raises(GenomeError, match="shape"):
        load_genome(RealVectorSpace(6, dtype="float32"), ref, tmp_path)
