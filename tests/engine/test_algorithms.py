"""Search algorithms end to end on small benchmark problems, plus NSGA-II's building blocks
and checkpoint round trips."""

import io

import moocore
import numpy as np
import pytest

from evotune.engine.algorithm import Algorithm
from evotune.engine.annealing import RandomSearch, SimulatedAnnealing
from evotune.engine.ga import GeneticAlgorithm
from evotune.engine.nsga2 import (
    NSGA2,
    crowded_order,
    crowding_distance,
    non_dominated_fronts,
    survivors,
)
from evotune.engine.operators import CROSSOVER, MUTATION, SELECTION
from evotune.engine.spaces import BinarySpace, RealVectorSpace


def onemax(genomes: np.ndarray) -> np.ndarray:
    """Loss = minus the number of ones (optimum: -L)."""
    return -genomes.sum(axis=1, keepdims=True).astype(float)


def sphere(genomes: np.ndarray) -> np.ndarray:
    return (genomes.astype(float) ** 2).sum(axis=1, keepdims=True)


def zdt(genomes: np.ndarray, which: int) -> np.ndarray:
    """ZDT1 / ZDT2 (30 variables in [0, 1]), as pymoo defines them."""
    f1 = genomes[:, 0]
    g = 1 + 9 * genomes[:, 1:].mean(axis=1)
    h = 1 - np.sqrt(f1 / g) if which == 1 else 1 - (f1 / g) ** 2
    return np.stack([f1, g * h], axis=1)


def generation(algo: Algorithm, loss) -> np.ndarray:
    genomes = algo.ask()
    algo.tell(genomes, loss(genomes))
    return genomes


def checkpoint(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Save and reload a state dict as a portable .npz (no pickling allowed)."""
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def onemax_ga(rng, population=50, elitism=2, mutation="bit_flip") -> GeneticAlgorithm:
    return GeneticAlgorithm(
        BinarySpace(100),
        rng,
        population,
        SELECTION.build({"name": "tournament", "k": 2}, "selection"),
        CROSSOVER.build("uniform", "crossover"),
        MUTATION.build(mutation, "mutation"),
        elitism=elitism,
    )


def zdt_nsga2(rng) -> NSGA2:
    return NSGA2(
        RealVectorSpace(30, 0.0, 1.0),
        rng,
        100,
        SELECTION.build({"name": "tournament", "k": 2}, "selection"),
        CROSSOVER.build({"name": "sbx", "eta": 15, "prob": 0.9}, "crossover"),
        MUTATION.build({"name": "polynomial", "eta": 20, "rate": 1 / 30}, "mutation"),
    )


# --- genetic algorithm ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_ga_solves_onemax(seed):
    """Budget: population 50, tournament k=2, uniform crossover, bit_flip 1/L, elitism 2,
    at most 200 generations (seeds 0-4 need about 30-60) -> all 100 ones."""
    ga = onemax_ga(np.random.default_rng(seed))
    for _ in range(200):
        generation(ga, onemax)
        if ga.losses[0, 0] == -100:
            break
    assert ga.losses[0, 0] == -100
    assert ga.genomes[0].all()


@pytest.mark.parametrize("seed", range(3))
def test_seed_layers_preset_improves_onemax(seed):
    """SEEDS.md §1 scheme (population 24, truncation 0.5, elitism 12, sequential crossover,
    seed_flip 0.04/0.04) raises the mean number of ones by > 12 in 30 generations."""
    ga = GeneticAlgorithm(
        BinarySpace(100),
        np.random.default_rng(seed),
        24,
        SELECTION.build({"name": "truncation", "fraction": 0.5}, "selection"),
        CROSSOVER.build("sequential", "crossover"),
        MUTATION.build("seed_flip", "mutation"),
        elitism=12,
    )
    means = []
    for _ in range(30):
        generation(ga, onemax)
        means.append(-ga.losses[:, 0].mean())
    assert means[-1] > means[0] + 12
    assert means[-1] >= means[10] >= means[0]


def test_ga_elitism_keeps_best():
    """With elitism the best loss never worsens, even under destructive mutation;
    without it, it does (so the check has teeth). Elites are not re-evaluated."""
    heavy = MUTATION.build({"name": "bit_flip", "rate": 0.3}, "mutation")
    for elitism, never_worse in ((2, True), (0, False)):
        ga = onemax_ga(np.random.default_rng(0), population=10, elitism=elitism)
        ga.mutation = heavy
        best = []
        for gen in range(40):
            asked = generation(ga, onemax)
            assert len(asked) == (10 if gen == 0 else 10 - elitism)
            best.append(ga.losses[0, 0])
        assert (np.all(np.diff(best) <= 0)) == never_worse


def test_ga_population_sorted_best_first():
    """After tell, the population is sorted by the first objective."""
    ga = onemax_ga(np.random.default_rng(1))
    for _ in range(3):
        generation(ga, onemax)
    genomes, losses = ga.population()
    assert np.all(np.diff(losses[:, 0]) >= 0)
    np.testing.assert_array_equal(losses, onemax(genomes))


def test_ga_rejects_bad_elitism_and_reports_no_population_yet():
    """elitism must be in [0, population); population() needs a tell first."""
    with pytest.raises(ValueError, match="elitism"):
        onemax_ga(np.random.default_rng(0), population=4, elitism=4)
    with pytest.raises(RuntimeError, match="no population yet"):
        onemax_ga(np.random.default_rng(0)).population()


# --- NSGA-II -------------------------------------------------------------------------


@pytest.mark.parametrize("which", [1, 2])
def test_nsga2_matches_pymoo_hypervolume_on_zdt(which):
    """ZDT1/ZDT2, population 100, 200 generations, tournament on the crowded order, SBX
    (eta 15, prob 0.9), polynomial (eta 20, rate 1/30): hypervolume (ref [1.1, 1.1]) of the
    final population >= 99% of pymoo's NSGA2(pop_size=100) with the same seed."""
    from pymoo.algorithms.moo.nsga2 import NSGA2 as PymooNSGA2
    from pymoo.optimize import minimize
    from pymoo.problems import get_problem

    seed, ref = 0, [1.1, 1.1]
    algo = zdt_nsga2(np.random.default_rng(seed))
    for _ in range(200):
        generation(algo, lambda g: zdt(g, which))
    ours = moocore.hypervolume(algo.losses, ref=ref)

    result = minimize(
        get_problem(f"zdt{which}"), PymooNSGA2(pop_size=100), ("n_gen", 200), seed=seed
    )
    theirs = moocore.hypervolume(result.pop.get("F"), ref=ref)
    assert theirs > (0.85 if which == 1 else 0.52)  # the oracle itself converged
    assert ours >= 0.99 * theirs


def two_objectives(genomes: np.ndarray) -> np.ndarray:
    """Ones count against zeros count: every genome is Pareto-optimal."""
    ones = genomes.sum(axis=1).astype(float)
    return np.stack([-ones, ones], axis=1)


def test_nsga2_offspring_are_new_genomes():
    """Offspring never duplicate each other or a population member."""
    space = BinarySpace(6)
    algo = NSGA2(
        space,
        np.random.default_rng(0),
        12,
        SELECTION.build("tournament", "s"),
        CROSSOVER.build("uniform", "c"),
        MUTATION.build("bit_flip", "m"),
    )
    generation(algo, two_objectives)
    for _ in range(5):
        members = {space.hash(g) for g in algo.genomes}
        children = algo.ask()
        keys = [space.hash(g) for g in children]
        assert len(set(keys)) == len(keys) == 12 and not members & set(keys)
        algo.tell(children, two_objectives(children))


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def brute_force_fronts(losses: np.ndarray) -> list[list[int]]:
    """Peel off the members no remaining member dominates, one front at a time."""
    remaining, fronts = list(range(len(losses))), []
    while remaining:
        front = [
            i for i in remaining if not any(dominates(losses[j], losses[i]) for j in remaining)
        ]
        fronts.append(front)
        remaining = [i for i in remaining if i not in front]
    return fronts


@pytest.mark.parametrize(
    "shape, integers",
    [((60, 2), False), ((40, 3), False), ((50, 2), True), ((80, 3), True), ((30, 4), True)],
)
def test_non_dominated_fronts_match_brute_force(shape, integers):
    """Fronts (moocore's pareto_rank) equal the peeling definition, on continuous points
    and on points with ties and exact duplicates; indices ascend within a front."""
    gen = np.random.default_rng(shape[0])
    losses = gen.integers(0, 5, shape).astype(float) if integers else gen.random(shape)
    losses = np.concatenate([losses, losses[gen.integers(0, len(losses), 10)]])  # duplicates
    fronts = [f.tolist() for f in non_dominated_fronts(losses)]
    assert fronts == brute_force_fronts(losses)
    assert len(fronts) > 2


def test_non_dominated_fronts_of_no_member_and_of_one_objective():
    assert non_dominated_fronts(np.zeros((0, 2))) == []
    fronts = non_dominated_fronts(np.array([[3.0], [1.0], [1.0], [2.0]]))
    assert [f.tolist() for f in fronts] == [[1, 2], [3], [0]]


def test_non_dominated_fronts_non_finite_is_worst():
    """NaN and inf losses count as the worst value of their objective."""
    losses = np.array([[0.5, 0.5], [np.nan, 0.5], [np.inf, np.inf], [0.2, 0.9]])
    fronts = [sorted(f.tolist()) for f in non_dominated_fronts(losses)]
    assert fronts == [[0, 3], [1], [2]]
    # NaN and inf are the same worst value: equal to each other, so one front
    losses = np.array([[np.nan, 1.0, 2.0], [np.inf, 1.0, 2.0], [0.0, 1.0, np.nan]])
    assert [f.tolist() for f in non_dominated_fronts(losses)] == [[0, 1, 2]]


def brute_force_crowding(losses: np.ndarray) -> np.ndarray:
    """Deb's definition: per objective, boundary points infinite, others add the normalised
    gap between their two neighbours."""
    n, m = losses.shape
    distance = np.zeros(n)
    for j in range(m):
        order = sorted(range(n), key=lambda i: losses[i, j])
        span = losses[order[-1], j] - losses[order[0], j]
        distance[order[0]] = distance[order[-1]] = np.inf
        for k in range(1, n - 1):
            distance[order[k]] += (losses[order[k + 1], j] - losses[order[k - 1], j]) / span
    return distance


@pytest.mark.parametrize("m", [2, 3])
def test_crowding_distance_matches_brute_force(m):
    """crowding_distance equals the definition on random points (no ties)."""
    losses = np.random.default_rng(m).random((30, m))
    np.testing.assert_allclose(crowding_distance(losses), brute_force_crowding(losses))
    assert np.all(crowding_distance(losses[:2]) == np.inf)


def test_crowded_order_ranks_fronts_then_crowding():
    """Position sorts by front first, then by decreasing crowding within a front."""
    losses = np.random.default_rng(7).random((40, 2))
    position = crowded_order(losses)
    assert sorted(position) == list(range(40))
    fronts = non_dominated_fronts(losses)
    for better, worse in zip(fronts[:-1], fronts[1:], strict=True):
        assert position[better].max() < position[worse].min()
    first = fronts[0]
    crowd = crowding_distance(losses[first])
    np.testing.assert_array_equal(crowd[np.argsort(position[first])], np.sort(crowd)[::-1])


def test_survivors_keep_first_front_then_least_crowded():
    """Whole fronts while they fit, then the least crowded members of the next one."""
    losses = np.random.default_rng(8).random((60, 2))
    fronts = non_dominated_fronts(losses)
    n = len(fronts[0]) + len(fronts[1]) // 2 + 1
    keep = survivors(losses, n)
    assert len(keep) == len(set(keep)) == n
    assert set(fronts[0]) <= set(keep)
    cut = fronts[1]
    crowd = crowding_distance(losses[cut])
    kept = np.isin(cut, keep)
    assert 0 < kept.sum() < len(cut)
    assert crowd[kept].min() >= crowd[~kept].max()
    assert not set(keep) & set(np.concatenate(fronts[2:]))


# --- annealing and random search -----------------------------------------------------


def annealer(space, rng, mutation) -> SimulatedAnnealing:
    return SimulatedAnnealing(space, rng, 10, MUTATION.build(mutation, "mutation"))


def test_annealing_improves_onemax():
    """100 steps of 10 bit-flip neighbours bring OneMax from ~60 to >= 90 ones."""
    sa = annealer(BinarySpace(100), np.random.default_rng(0), "bit_flip")
    generation(sa, onemax)
    start = sa.current_loss
    for _ in range(100):
        generation(sa, onemax)
    assert sa.losses[0, 0] <= -90 and sa.losses[0, 0] < start - 25
    assert sa.temperature() < sa.t0 * 0.01  # it cooled


def test_annealing_improves_sphere():
    """On a 5-d sphere the best loss drops by over two orders of magnitude."""
    sa = annealer(
        RealVectorSpace(5, -5.0, 5.0), np.random.default_rng(1), {"name": "gaussian", "sigma": 0.02}
    )
    generation(sa, sphere)
    start = sa.losses[0, 0]
    for _ in range(100):
        generation(sa, sphere)
    assert sa.losses[0, 0] < start / 100
    assert np.all(np.diff(sa.losses[:, 0]) >= 0)  # reported population: best first


def test_annealing_state_round_trip():
    """A fresh annealer loaded from a checkpoint, with the same generator state, asks the
    same neighbours and stands at the same temperature."""
    space = BinarySpace(40)
    sa = annealer(space, np.random.default_rng(2), "bit_flip")
    for _ in range(7):
        generation(sa, onemax)
    state, rng_state = checkpoint(sa.state_dict()), sa.rng.bit_generator.state
    expected = sa.ask()
    fresh = annealer(space, np.random.default_rng(99), "bit_flip")
    fresh.load_state_dict(state)
    fresh.rng.bit_generator.state = rng_state
    np.testing.assert_array_equal(fresh.ask(), expected)
    assert fresh.step == 7 and fresh.temperature() == sa.temperature()
    assert fresh.current_loss == sa.current_loss


def test_random_search_keeps_best_so_far():
    """The population is always the best `population` genomes seen, best first."""
    rs = RandomSearch(RealVectorSpace(3, -1.0, 1.0), np.random.default_rng(3), 5)
    seen = []
    for _ in range(20):
        seen.extend(sphere(generation(rs, sphere))[:, 0])
        np.testing.assert_allclose(rs.losses[:, 0], np.sort(seen)[:5])
    np.testing.assert_allclose(sphere(rs.genomes), rs.losses)


# --- checkpoints ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ga", "nsga2"])
def test_state_dict_round_trip_asks_same_genomes(kind):
    """After loading a checkpoint into a fresh instance and restoring the generator state,
    ask() returns identical genomes."""

    def make(seed):
        rng = np.random.default_rng(seed)
        return onemax_ga(rng) if kind == "ga" else zdt_nsga2(rng)

    loss = onemax if kind == "ga" else (lambda g: zdt(g, 1))
    algo = make(0)
    for _ in range(5):
        generation(algo, loss)
    state, rng_state = checkpoint(algo.state_dict()), algo.rng.bit_generator.state
    expected = algo.ask()
    fresh = make(123)
    fresh.load_state_dict(state)
    fresh.rng.bit_generator.state = rng_state
    np.testing.assert_array_equal(fresh.ask(), expected)
    np.testing.assert_array_equal(fresh.population()[1], algo.population()[1])


def test_truncation_mates_are_drawn_at_random_among_the_kept_members():
    """Truncation returns its winners best first; a pairwise crossover must not always
    mate the two best (rows 0, 1), then the next two (the genetic autoencoder's GA)."""
    from evotune.config import resolve
    from evotune.runner import build_algorithm

    search = {
        "population": 10,
        "elitism": 5,
        "operators": {
            "selection": {"name": "truncation", "fraction": 0.5},
            "crossover": {"name": "uniform", "prob": 1.0, "swap": 0.5},
            "mutation": {"name": "bit_flip", "rate": 0.0},
        },
    }
    config = resolve({"task": {"name": "onemax", "length": 40}, "search": search})
    ga = build_algorithm(
        config.search, config.task_class.from_config(config).space, 1, np.random.default_rng(0)
    )
    blocks = np.kron(np.eye(10, dtype=np.int8), np.ones(4, dtype=np.int8))  # member i: block i
    ga.tell(blocks, np.arange(10.0)[:, None])  # member i ranks i-th
    pairs = set()
    for _ in range(30):
        children = ga.ask()[:4]  # two mated pairs; the fifth child has no mate
        for a, b in zip(children[0::2], children[1::2]):
            pairs.add(frozenset(np.flatnonzero((a | b).reshape(10, 4).any(axis=1))))
    assert all(p <= set(range(5)) for p in pairs)  # parents are the five kept members
    assert len(pairs) >= 8  # of the 10 possible pairs (not just {0, 1} and {2, 3})
