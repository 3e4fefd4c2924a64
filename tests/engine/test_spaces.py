"""Genome spaces: sampling, repair, JSON coding, hashing and shape checks."""

import math

import numpy as np
import pytest

from evotune.engine.spaces import (
    BinarySpace,
    Choice,
    GenomeError,
    Int,
    MixedSpace,
    Real,
    RealVectorSpace,
)
from evotune.errors import UserError


def hparam_space() -> MixedSpace:
    """The SEEDS.md §2 chromosome plus an optimiser choice."""
    return MixedSpace(
        [
            Real("lr", 1e-6, 1e-1, log=True),
            Real("dropout", 0.1, 0.9),
            Int("layers", 1, 58),
            Choice("optimizer", ("adam", "sgd", "rmsprop")),
        ]
    )


# --- BinarySpace ---------------------------------------------------------------------


def test_binary_frozen_prefix_is_zero_after_sample():
    """Sampled genomes have 0 in every frozen gene, whatever the ones fraction."""
    space = BinarySpace(50, frozen_prefix=10, ones_fraction=0.9)
    pop = space.sample(500, np.random.default_rng(0))
    assert pop.shape == (500, 50) and pop.dtype == np.uint8
    assert not pop[:, :10].any()
    assert 0.85 < pop[:, 10:].mean() < 0.95


def test_binary_repair_zeroes_prefix_and_maps_nonzero_to_one():
    """repair() forces the frozen prefix to 0 and any non-zero value to 1."""
    space = BinarySpace(6, frozen_prefix=2)
    repaired = space.repair(np.array([[1, 3, 0, 7, 1, 0], [2, 0, 5, 0, 0, 1]]))
    np.testing.assert_array_equal(repaired, [[0, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 1]])
    assert repaired.dtype == np.uint8


def test_binary_uniform_ones_fraction_spreads_densities():
    """'uniform' draws each genome's density from U(0, 1) (SEEDS.md §3), a fixed one does not."""
    rng = np.random.default_rng(1)
    density = BinarySpace(1000, ones_fraction="uniform").sample(2000, rng).mean(axis=1)
    assert density.min() < 0.05 and density.max() > 0.95
    assert abs(density.std() - 1 / math.sqrt(12)) < 0.02
    quartiles = np.quantile(density, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(quartiles, [0.25, 0.5, 0.75], atol=0.05)
    fixed = BinarySpace(1000, ones_fraction=0.5).sample(2000, rng).mean(axis=1)
    assert fixed.std() < 0.03


def test_binary_json_round_trip():
    """to_json gives a '0'/'1' string; from_json restores the same genome."""
    space = BinarySpace(40, frozen_prefix=3)
    for genome in space.sample(20, np.random.default_rng(2)):
        text = space.to_json(genome)
        assert isinstance(text, str) and len(text) == 40 and set(text) <= {"0", "1"}
        back = space.from_json(text)
        np.testing.assert_array_equal(back, genome)
        assert space.hash(back) == space.hash(genome)


@pytest.mark.parametrize("bad", ["0101", "01010101012", "0101x10101", None, [0, 1] * 5, 1010])
def test_binary_from_json_rejects_bad_values(bad):
    """Wrong length, characters or type raise GenomeError (a UserError)."""
    with pytest.raises(GenomeError, match="'0'/'1'"):
        BinarySpace(10).from_json(bad)
    assert issubclass(GenomeError, UserError)


@pytest.mark.parametrize(
    "kwargs", [{"length": 0}, {"length": 5, "frozen_prefix": 5}, {"length": 5, "ones_fraction": 2}]
)
def test_binary_rejects_bad_settings(kwargs):
    """Length < 1, a prefix covering the genome, or ones_fraction outside [0, 1] are errors."""
    with pytest.raises(GenomeError):
        BinarySpace(**kwargs)


# --- MixedSpace ----------------------------------------------------------------------


def test_mixed_log_gene_is_log_uniform():
    """A log gene on [1e-6, 1e-1] has median 10^-3.5 and 40% of values below 1e-4."""
    space = hparam_space()
    lrs = np.array([space.decode(g)["lr"] for g in space.sample(20000, np.random.default_rng(3))])
    assert lrs.min() >= 1e-6 and lrs.max() <= 1e-1
    assert abs(np.log10(np.median(lrs)) + 3.5) < 0.1
    assert abs((lrs < 1e-4).mean() - 0.4) < 0.02


def test_mixed_int_and_choice_cover_all_values_uniformly():
    """Every integer in [low, high] (ends included) and every option is about equally likely."""
    space = hparam_space()
    pop = space.sample(29000, np.random.default_rng(4))
    ints = np.bincount(pop[:, 2].astype(int), minlength=59)[1:]
    assert len(ints) == 58 and ints.min() > 375 and ints.max() < 625  # expected 500 each
    choices = np.bincount(pop[:, 3].astype(int), minlength=3) / len(pop)
    np.testing.assert_allclose(choices, 1 / 3, atol=0.02)
    assert np.all(pop[:, 2:] == np.round(pop[:, 2:]))


def test_mixed_repair_rounds_and_clips():
    """Discrete genes are rounded, every gene clipped to its (stored) bounds."""
    space = hparam_space()
    raw = np.array([[-10.0, 2.0, 7.6, 2.7], [0.0, -1.0, 100.2, -3.0], [-3.0, 0.5, 12.4, 0.6]])
    expected = [[-6.0, 0.9, 8.0, 2.0], [-1.0, 0.1, 58.0, 0.0], [-3.0, 0.5, 12.0, 1.0]]
    np.testing.assert_allclose(space.repair(raw), expected)


def test_mixed_decode_and_json_round_trip():
    """decode gives natural values (10^x for log genes); from_json inverts to_json."""
    space = hparam_space()
    decoded = space.decode(np.array([-3.0, 0.5, 12.0, 1.0]))
    assert decoded == pytest.approx({"lr": 1e-3, "dropout": 0.5, "layers": 12, "optimizer": "sgd"})
    assert isinstance(decoded["layers"], int)
    for genome in space.sample(200, np.random.default_rng(5)):
        value = space.to_json(genome)
        assert value == space.decode(genome)
        np.testing.assert_allclose(space.from_json(value), genome, rtol=1e-12, atol=1e-12)


def test_mixed_from_json_rejects_missing_keys():
    """A mapping without exactly the gene names raises GenomeError naming the keys."""
    with pytest.raises(GenomeError, match="dropout"):
        hparam_space().from_json({"lr": 1e-3, "layers": 3, "optimizer": "adam"})


def test_mixed_rejects_duplicate_names():
    """Two genes with the same name are an error."""
    with pytest.raises(GenomeError, match="unique"):
        MixedSpace([Int("a", 0, 3), Real("a", 0.0, 1.0)])


@pytest.mark.parametrize("low", [0.0, -1e-3])
def test_mixed_rejects_log_gene_with_nonpositive_low(low):
    """A log-scaled gene needs low > 0."""
    with pytest.raises(GenomeError, match="low > 0"):
        MixedSpace([Real("lr", low, 1.0, log=True)])


def test_mixed_rejects_inverted_bounds_and_empty():
    """low > high and an empty gene list are errors."""
    with pytest.raises(GenomeError, match="low"):
        MixedSpace([Int("n", 5, 1)])
    with pytest.raises(GenomeError):
        MixedSpace([])


# --- RealVectorSpace -----------------------------------------------------------------


def test_real_vector_bounds_respected():
    """Sampling stays in [low, high] and covers it; repair clips."""
    space = RealVectorSpace(8, low=-2.0, high=3.0)
    pop = space.sample(5000, np.random.default_rng(6))
    assert pop.min() >= -2.0 and pop.max() <= 3.0
    assert pop.min() < -1.99 and pop.max() > 2.99
    np.testing.assert_array_equal(space.repair(np.full((2, 8), 10.0)), np.full((2, 8), 3.0))
    np.testing.assert_array_equal(space.repair(np.full((2, 8), -10.0)), np.full((2, 8), -2.0))


def test_real_vector_unbounded_samples_normal():
    """Without finite bounds, genes are N(0, init_std)."""
    pop = RealVectorSpace(10, init_std=0.3).sample(5000, np.random.default_rng(7))
    assert abs(pop.mean()) < 0.01 and abs(pop.std() - 0.3) < 0.01


def test_real_vector_float32_dtype_kept():
    """A float32 space keeps float32 through sample, repair, check and from_json."""
    space = RealVectorSpace(4, low=-1.0, high=1.0, dtype="float32")
    rng = np.random.default_rng(8)
    assert space.sample(3, rng).dtype == np.float32
    assert space.repair(np.zeros((3, 4), dtype=np.float64)).dtype == np.float32
    assert space.check(np.zeros(4)).dtype == np.float32
    assert space.from_json([0.5, 0.25, 0.0, -1.0]).dtype == np.float32


# --- hash and check ------------------------------------------------------------------


def test_hash_equal_genomes_equal_hash():
    """Equal genomes hash equally, whatever container or input dtype they come in."""
    space = BinarySpace(8)
    a = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=np.uint8)
    assert space.hash(a) == space.hash(a.copy()) == space.hash([1, 0, 1, 1, 0, 0, 1, 0])
    assert space.hash(a) == space.hash(a.astype(np.int64))
    h = space.hash(a)
    assert len(h) == 16 and int(h, 16) >= 0


def test_hash_one_gene_change_differs():
    """Changing any single gene changes the hash."""
    space = RealVectorSpace(6)
    genome = np.linspace(-1, 1, 6)
    hashes = {space.hash(genome)}
    for i in range(6):
        changed = genome.copy()
        changed[i] += 1e-9
        hashes.add(space.hash(changed))
    assert len(hashes) == 7


def test_hash_kind_is_part_of_the_hash():
    """The same bytes in spaces of different kinds hash differently."""
    genome = np.array([0.0, 1.0, 0.5])
    mixed = MixedSpace([Real("a", 0, 1), Real("b", 0, 1), Real("c", 0, 1)])
    assert mixed.hash(genome) != RealVectorSpace(3).hash(genome)


def test_hash_is_stable_across_runs():
    """The hash of a fixed genome is a constant (computed once, hard-coded)."""
    binary = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    assert BinarySpace(8).hash(binary) == "f0e129b9483c8f52"
    mixed = np.array([-3.0, 0.5, 12.0, 1.0])
    assert hparam_space().hash(mixed) == "152c3898f3c4f687"


def test_check_names_expected_and_received_shape():
    """check() rejects a wrong shape with a message naming both shapes."""
    space = BinarySpace(10)
    with pytest.raises(GenomeError) as info:
        space.check(np.zeros((3, 9)))
    assert "(n, 10)" in str(info.value) and "(3, 9)" in str(info.value)
    with pytest.raises(GenomeError, match=r"\(2, 2, 10\)"):
        space.check(np.zeros((2, 2, 10)))
    assert space.check(np.zeros(10)).shape == (1, 10)  # a single row becomes a population
