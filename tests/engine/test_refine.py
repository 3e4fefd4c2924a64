"""The GA's Lamarckian `refine`: elites improved each generation, asked again, carried."""

from __future__ import annotations

import numpy as np

from evotune.engine.ga import GeneticAlgorithm
from evotune.engine.operators import CROSSOVER, MUTATION, SELECTION
from evotune.engine.spaces import RealVectorSpace


def shrink(genomes, seeds):
    """A stand-in for gradient steps on the sphere: halfway to zero."""
    assert len(seeds) == len(genomes)
    return genomes * 0.5


def make(refine=shrink, elitism=2, seed=0):
    space = RealVectorSpace(8)
    return GeneticAlgorithm(
        space,
        np.random.default_rng(seed),
        6,
        SELECTION.build({"name": "truncation", "fraction": 0.5}, "s"),
        CROSSOVER.build({"name": "uniform", "swap": 0.2}, "c"),
        MUTATION.build({"name": "zero_out", "rate": 0.01}, "m"),
        elitism=elitism,
        refine=refine,
    )


def sphere(genomes):
    return (genomes**2).sum(axis=1, keepdims=True)


def test_refined_elites_are_asked_again_and_carried():
    algo = make()
    first = algo.ask()
    algo.tell(first, sphere(first))
    elites = algo.genomes[:2].copy()
    asked = algo.ask()
    assert len(asked) == 6  # 2 refined elites + 4 children
    assert np.allclose(asked[:2], elites * 0.5)
    algo.tell(asked, sphere(asked))
    kept = {row.tobytes() for row in algo.genomes}
    assert all(row.tobytes() in kept for row in asked[:2])  # better than before: kept
    assert not any(row.tobytes() in kept for row in elites)  # the unrefined ones are gone


def test_without_refine_elites_are_not_asked_again():
    algo = make(refine=None)
    first = algo.ask()
    algo.tell(first, sphere(first))
    assert len(algo.ask()) == 4


def test_refined_runs_improve_faster_and_replay_the_same_genomes():
    plain, memetic = make(refine=None), make()
    for algo in (plain, memetic):
        for _ in range(5):
            genomes = algo.ask()
            algo.tell(genomes, sphere(genomes))
    assert memetic.losses[0, 0] < plain.losses[0, 0]
    state = {k: v.copy() for k, v in memetic.state_dict().items()}
    rng_state = memetic.rng.bit_generator.state
    asked = memetic.ask()
    again = make()
    again.load_state_dict(state)
    again.rng.bit_generator.state = rng_state
    assert np.array_equal(again.ask(), asked)


def test_a_cut_generation_keeps_the_old_elites_it_did_not_tell():
    algo = make()
    first = algo.ask()
    algo.tell(first, sphere(first))
    old = algo.genomes[:2].copy()
    asked = algo.ask()
    algo.tell(asked[:1], sphere(asked[:1]))  # a budget cut after the first genome
    assert len(algo.genomes) == 2
    assert any(np.array_equal(row, old[1]) for row in algo.genomes)
