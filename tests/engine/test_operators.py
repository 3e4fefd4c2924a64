"""Each operator's defining property. Fixed seeds and large samples: tolerances are several
standard deviations wide, so these cannot flake."""

import numpy as np
import pytest

from evotune.engine.operators import CROSSOVER, MUTATION
from evotune.engine.operators.crossover import (
    one_point,
    random_pairs,
    sbx,
    sequential,
    two_point,
    uniform,
)
from evotune.engine.operators.mutation import (
    bit_flip,
    gaussian,
    polynomial,
    reset,
    seed_flip,
    zero_out,
)
from evotune.engine.operators.selection import roulette, tournament, truncation
from evotune.engine.spaces import BinarySpace, Choice, Int, MixedSpace, Real, RealVectorSpace


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def labelled_pairs(n_pairs: int, length: int) -> np.ndarray:
    """Pairs whose genes tell their origin: +j+1 in the first parent, -(j+1) in the second."""
    row = np.arange(1, length + 1, dtype=float)
    return np.tile(np.stack([row, -row]), (n_pairs, 1))


def from_second(children: np.ndarray) -> np.ndarray:
    """For labelled pairs: True where a gene came from the pair's second parent."""
    positions = np.broadcast_to(np.arange(1, children.shape[1] + 1), children.shape)
    np.testing.assert_array_equal(np.abs(children), positions)  # genes keep their position
    return children < 0


def row_labelled(n: int, length: int) -> np.ndarray:
    """parents[i, j] = 1000 i + j: every gene tells its parent row and its position."""
    return 1000 * np.arange(n)[:, None] + np.arange(length)[None, :]


# --- selection -----------------------------------------------------------------------


def test_truncation_returns_top_fraction_best_first_cycled():
    """Only the best round(fraction x n) members, best first, repeated in order to fill n."""
    losses = rng(0).permutation(10).astype(float)
    chosen = truncation(losses, 12, rng(1), fraction=0.3)
    best3 = np.argsort(losses)[:3]
    np.testing.assert_array_equal(chosen, np.tile(best3, 4))


def test_truncation_keeps_at_least_one():
    """A tiny fraction still selects the single best member."""
    losses = np.array([3.0, 1.0, 2.0])
    np.testing.assert_array_equal(truncation(losses, 4, rng(), fraction=0.01), [1, 1, 1, 1])


def test_tournament_k2_matches_expected_pressure():
    """k=2: winners' mean rank equals E[min of two uniform draws] and beats random."""
    n, draws = 100, 100_000
    losses = rng(2).permutation(n).astype(float)  # loss = rank
    chosen = losses[tournament(losses, draws, rng(3), k=2)]
    r = np.arange(n)
    expected = np.sum(r * ((n - r) ** 2 - (n - r - 1) ** 2)) / n**2  # about 33
    assert abs(chosen.mean() - expected) < 0.6
    assert chosen.mean() < losses.mean() - 15


def test_tournament_k1_is_uniform():
    """k=1 is uniform random selection, whatever the losses."""
    losses = np.array([0.0, 1.0, 5.0, 100.0, 1e9, 2.0, 3.0, 4.0, 6.0, 7.0])
    counts = np.bincount(tournament(losses, 100_000, rng(4), k=1), minlength=10)
    np.testing.assert_allclose(counts / 100_000, 0.1, atol=0.005)


def test_tournament_larger_k_selects_better():
    """Selection pressure grows with k."""
    losses = rng(5).random(200)
    means = [losses[tournament(losses, 20_000, rng(6), k=k)].mean() for k in (1, 2, 4, 8)]
    assert means == sorted(means, reverse=True) and means[-1] < 0.15


def test_roulette_weights_are_worst_minus_loss():
    """Probability proportional to (worst loss - loss): lower losses are preferred."""
    chosen = roulette(np.array([0.0, 1.0, 2.0, 3.0]), 60_000, rng(7))
    freq = np.bincount(chosen, minlength=4) / 60_000
    np.testing.assert_allclose(freq, [3 / 6, 2 / 6, 1 / 6, 0], atol=0.01)


def test_roulette_never_picks_infinite_losses():
    """Infinite (failed) losses get weight 0; the finite ones keep their proportions."""
    chosen = roulette(np.array([0.0, np.inf, 1.0, 2.0, np.nan]), 30_000, rng(8))
    freq = np.bincount(chosen, minlength=5) / 30_000
    assert freq[1] == freq[4] == freq[3] == 0
    assert abs(freq[0] - 2 / 3) < 0.015


def test_roulette_equal_losses_uniform_over_finite():
    """All finite losses equal: uniform among them, never an infinite one; all inf: uniform."""
    chosen = roulette(np.array([1.0, np.inf, 1.0, np.nan]), 20_000, rng(9))
    freq = np.bincount(chosen, minlength=4) / 20_000
    np.testing.assert_allclose(freq, [0.5, 0, 0.5, 0], atol=0.015)
    only = roulette(np.array([np.inf, 2.0, np.inf]), 100, rng(10))
    assert set(only) == {1}
    all_inf = np.bincount(roulette(np.full(4, np.inf), 20_000, rng(11)), minlength=4)
    np.testing.assert_allclose(all_inf / 20_000, 0.25, atol=0.015)


# --- crossover -----------------------------------------------------------------------


def test_one_point_prefix_of_one_parent_suffix_of_other():
    """Each child is parent A up to a cut in [1, L), then parent B; the siblings mirror."""
    length = 8
    children = one_point(labelled_pairs(2000, length), rng(12), RealVectorSpace(length))
    mask = from_second(children)
    cuts = (~mask).sum(axis=1)
    first, second = mask[0::2], mask[1::2]
    np.testing.assert_array_equal(first, np.arange(length) >= cuts[0::2, None])
    np.testing.assert_array_equal(second, ~first)
    assert set(cuts[0::2]) == set(range(1, length))


def test_two_point_swaps_one_inner_segment():
    """Children are A-B-A segments with one non-empty swapped middle; the siblings mirror;
    the two distinct cuts range over [1, L)."""
    length = 6
    children = two_point(labelled_pairs(3000, length), rng(13), RealVectorSpace(length))
    mask = from_second(children)
    first, second = mask[0::2], mask[1::2]
    np.testing.assert_array_equal(second, ~first)
    seen = set()
    for row in first:
        swapped = np.flatnonzero(row)
        assert len(swapped) > 0 and np.all(np.diff(swapped) == 1)  # one contiguous block
        seen.add((swapped[0], swapped[-1] + 1))
    assert seen == {(a, b) for a in range(1, length) for b in range(a + 1, length)}


def test_uniform_swap_rate_and_complementary_children():
    """Each gene is exchanged with probability `swap`; siblings take complementary genes."""
    parents = labelled_pairs(1000, 50)
    for swap in (0.5, 0.2):
        mask = from_second(uniform(parents, rng(14), RealVectorSpace(50), swap=swap))
        np.testing.assert_array_equal(mask[1::2], ~mask[0::2])
        assert abs(mask[0::2].mean() - swap) < 0.01


@pytest.mark.parametrize("op", [one_point, two_point, uniform, sbx])
def test_pairwise_crossover_prob_zero_is_identity(op):
    """prob=0: no pair mates, the children are the parents."""
    parents = rng(15).random((20, 10))
    children = op(parents, rng(16), RealVectorSpace(10, 0.0, 1.0), prob=0.0)
    np.testing.assert_array_equal(children, parents)


def test_pairwise_crossover_prob_is_fraction_of_pairs_mated():
    """prob=0.3: about 30% of the pairs exchange genes."""
    parents = labelled_pairs(10_000, 10)
    mask = from_second(one_point(parents, rng(17), RealVectorSpace(10), prob=0.3))
    assert abs(mask[0::2].any(axis=1).mean() - 0.3) < 0.015


@pytest.mark.parametrize("frozen", [0, 4])
def test_sequential_child_i_joins_parent_i_and_previous(frozen):
    """child i = parent[i][:cut] + parent[i-1][cut:] (child 0 uses the last parent), with
    the cut uniform over [frozen prefix, L)."""
    n, length = 12, 10
    parents = row_labelled(n, length)
    previous = np.roll(parents, 1, axis=0)
    cuts = []
    for seed in range(200):
        children = sequential(parents, rng(seed), BinarySpace(length, frozen_prefix=frozen))
        assert children.shape == parents.shape
        head = children == parents
        cut = head.sum(axis=1)
        np.testing.assert_array_equal(head, np.arange(length) < cut[:, None])
        np.testing.assert_array_equal(children[~head], previous[~head])
        cuts.extend(cut)
    assert set(cuts) == set(range(frozen, length))  # never below the frozen prefix


def test_random_pairs_children_join_two_parents_at_one_cut():
    """Each child is parent h up to a cut in [0, L), then another parent t != h."""
    n, length = 10, 8
    parents = row_labelled(n, length)
    cuts = []
    for seed in range(100):
        children = random_pairs(parents, rng(seed), RealVectorSpace(length))
        np.testing.assert_array_equal(children % 1000, parents % 1000)  # positions kept
        for child in children // 1000:
            changes = np.flatnonzero(np.diff(child))
            assert len(changes) <= 1
            cuts.append(changes[0] + 1 if len(changes) else 0)
            if len(changes):
                assert child[0] != child[-1]
    assert set(cuts) == set(range(length))


def test_sbx_children_in_bounds():
    """Bounded SBX never leaves [low, high], even from parents on the bounds."""
    space = RealVectorSpace(10, -1.0, 2.0)
    parents = space.sample(2000, rng(18))
    parents[::3] = -1.0
    children = sbx(parents, rng(19), space, prob=1.0, eta=2.0)
    assert children.min() >= -1.0 and children.max() <= 2.0
    assert not np.array_equal(children, parents)


def test_sbx_preserves_each_pairs_mean_away_from_bounds():
    """Each mated pair's gene-wise mean is unchanged (bounded: far from the bounds)."""
    parents = 0.45 + 0.1 * rng(20).random((4000, 12))
    children = sbx(parents, rng(21), RealVectorSpace(12, 0.0, 1.0), prob=1.0)
    np.testing.assert_allclose(
        children[0::2] + children[1::2], parents[0::2] + parents[1::2], atol=1e-6
    )
    changed = (children != parents).mean()
    assert abs(changed - 0.5) < 0.02  # prob_var: half the genes of a mated pair vary


def test_sbx_preserves_pair_mean_unbounded():
    """Unbounded SBX is exactly mean-preserving, and spreads children around the parents."""
    parents = rng(22).normal(0, 1, (4000, 6))
    children = sbx(parents, rng(23), RealVectorSpace(6), prob=1.0, prob_var=1.0)
    np.testing.assert_allclose(
        children[0::2] + children[1::2], parents[0::2] + parents[1::2], atol=1e-9
    )
    assert (children != parents).mean() > 0.99


@pytest.mark.parametrize("name", CROSSOVER.names())
def test_crossover_leaves_parents_untouched(name):
    """Every crossover returns a new array and does not modify its input."""
    parents = rng(24).random((10, 6))
    before = parents.copy()
    children = CROSSOVER.get(name).fn(parents, rng(25), RealVectorSpace(6, 0.0, 1.0))
    np.testing.assert_array_equal(parents, before)
    assert children.shape == parents.shape and children is not parents


# --- mutation ------------------------------------------------------------------------


def test_bit_flip_default_rate_is_one_over_length():
    """Default rate 1/L: about one flipped bit per genome; flips are 1 - bit."""
    genomes = BinarySpace(50).sample(4000, rng(26))
    mutated = bit_flip(genomes, rng(27), BinarySpace(50))
    flipped = mutated != genomes
    assert abs(flipped.mean() - 1 / 50) < 0.002
    assert mutated.dtype == np.uint8 and set(np.unique(mutated)) <= {0, 1}


def test_bit_flip_explicit_rate():
    """An explicit rate is the per-bit flip probability."""
    genomes = np.zeros((2000, 50), dtype=np.uint8)
    assert abs(bit_flip(genomes, rng(28), BinarySpace(50), rate=0.2).mean() - 0.2) < 0.01


def test_seed_flip_fraction_of_genomes_changed():
    """About genome_prob of the genomes change; each changed one flips about L/2 genes when
    gene_fraction=1 (count = round(gene_fraction x randint(0, L)), SEEDS.md §1)."""
    genomes = np.zeros((40_000, 200), dtype=np.uint8)
    mutated = seed_flip(genomes, rng(29), BinarySpace(200), genome_prob=0.3, gene_fraction=1.0)
    flips = (mutated != genomes).sum(axis=1)
    assert abs((flips > 0).mean() - 0.3) < 0.015
    assert abs(flips[flips > 0].mean() - 100) < 5


def test_seed_flip_count_bounded_by_gene_fraction():
    """A changed genome flips at most round(gene_fraction x L) genes; all counts up to it occur."""
    genomes = BinarySpace(100).sample(5000, rng(30))
    mutated = seed_flip(genomes, rng(31), BinarySpace(100), genome_prob=1.0, gene_fraction=0.04)
    flips = (mutated != genomes).sum(axis=1)
    assert set(flips) == {0, 1, 2, 3, 4}  # round(0.04 x 100) = 4


def test_seed_flip_defaults_change_few_genomes():
    """Defaults (0.04, 0.04): at most 4% of genomes change."""
    genomes = np.zeros((20_000, 100), dtype=np.uint8)
    changed = (seed_flip(genomes, rng(32), BinarySpace(100)) != genomes).any(axis=1)
    assert 0.02 < changed.mean() < 0.045


def test_reset_rate_and_range_real():
    """Each gene is redrawn with probability rate (default 1/L) uniformly within its bounds."""
    space = RealVectorSpace(20, -1.0, 3.0)
    genomes = np.full((5000, 20), 10.0)  # outside the range: a redrawn gene is obvious
    for rate, expected in ((None, 1 / 20), (0.3, 0.3)):
        mutated = reset(genomes, rng(33), space, rate=rate)
        redrawn = mutated != 10.0
        assert abs(redrawn.mean() - expected) < 0.01
        assert mutated[redrawn].min() >= -1.0 and mutated[redrawn].max() <= 3.0


def test_reset_mixed_values_valid():
    """Redrawn mixed genes are within range and integral where discrete."""
    space = MixedSpace([Real("lr", 1e-5, 1e-1, log=True), Int("n", 2, 9), Choice("c", (1, 2, 3))])
    mutated = reset(space.sample(3000, rng(34)), rng(35), space, rate=1.0)
    assert np.all(mutated >= space.lower) and np.all(mutated <= space.upper)
    np.testing.assert_array_equal(mutated[:, 1:], np.round(mutated[:, 1:]))
    assert len(np.unique(mutated[:, 1])) == 8


def test_gaussian_sigma_scales_with_range_width():
    """The step is N(0, sigma x width) per gene (width 1 when unbounded)."""
    space = MixedSpace([Real("a", 0.0, 1.0), Real("b", -50.0, 50.0)])
    genomes = np.full((20_000, 2), 0.5)
    step = gaussian(genomes, rng(36), space, sigma=0.1) - genomes
    np.testing.assert_allclose(step.std(axis=0), [0.1, 10.0], rtol=0.03)
    assert np.all(np.abs(step.mean(axis=0)) < [0.003, 0.3])
    free = gaussian(np.zeros((20_000, 3)), rng(37), RealVectorSpace(3), sigma=0.2)
    assert abs(free.std() - 0.2) < 0.005


def test_gaussian_rate_is_fraction_moved():
    """rate < 1 moves only that fraction of genes."""
    genomes = np.zeros((5000, 10))
    moved = gaussian(genomes, rng(38), RealVectorSpace(10, -1.0, 1.0), rate=0.25) != 0
    assert abs(moved.mean() - 0.25) < 0.01


def test_zero_out_fraction():
    """Each gene becomes 0 with probability rate (SEEDS.md §4: 0.01); the rest are unchanged."""
    genomes = rng(39).uniform(1.0, 2.0, (500, 400))
    space = RealVectorSpace(400)
    for kwargs, expected, tol in (({}, 0.01, 0.002), ({"rate": 0.3}, 0.3, 0.01)):
        mutated = zero_out(genomes, rng(40), space, **kwargs)
        zeroed = mutated == 0
        assert abs(zeroed.mean() - expected) < tol
        np.testing.assert_array_equal(mutated[~zeroed], genomes[~zeroed])


def test_polynomial_in_bounds_and_rate():
    """Bounded polynomial mutation never leaves the bounds, even from them; rate ~ 1/L."""
    space = RealVectorSpace(30, 0.0, 1.0)
    genomes = space.sample(5000, rng(41))
    genomes[:100] = 0.0
    genomes[100:200] = 1.0
    mutated = polynomial(genomes, rng(42), space)
    assert mutated.min() >= 0.0 and mutated.max() <= 1.0
    assert abs((mutated != genomes).mean() - 1 / 30) < 0.003
    edge = polynomial(genomes[:200], rng(43), space, rate=1.0)
    assert edge.min() >= 0.0 and edge.max() <= 1.0
    assert (edge[:100] > 0).mean() > 0.4 and (edge[100:] < 1).mean() > 0.4  # they move inward


def test_polynomial_unbounded_uses_unit_width():
    """Unbounded genes move by less than half a unit width, both ways."""
    step = polynomial(np.zeros((5000, 4)), rng(44), RealVectorSpace(4), rate=1.0, eta=1.0)
    assert np.abs(step).max() <= 0.5 and step.min() < -0.3 and step.max() > 0.3


@pytest.mark.parametrize("name", MUTATION.names())
def test_mutation_returns_new_array(name):
    """Every mutation leaves its input untouched and keeps its dtype and shape."""
    kinds = MUTATION.get(name).kinds
    space = BinarySpace(20) if "binary" in kinds else RealVectorSpace(20, 0.0, 1.0)
    genomes = space.sample(50, rng(45))
    before = genomes.copy()
    fn = MUTATION.build(
        {"name": name, "rate": 1.0}
        if "rate" in MUTATION.get(name).params
        else {"name": name, "genome_prob": 1.0},
        "m",
    )
    mutated = fn(genomes, rng(46), space)
    np.testing.assert_array_equal(genomes, before)
    assert mutated.shape == genomes.shape and mutated.dtype == genomes.dtype
    assert not np.array_equal(mutated, genomes)
