from __future__ import annotations

import numpy as np
import pytest

from evotune.data.raw import Examples
from evotune.data.splits import cap_per_class, holdout, where
from evotune.errors import UserError

CLASSES = ["a", "b", "c"]


def labels_with_counts(*counts: int) -> np.ndarray:
    return np.concatenate([np.full(n, k) for k, n in enumerate(counts)])


def split(labels, fraction=0.2, seed=0, groups=None):
    return holdout(
        labels,
        fraction=fraction,
        seed=seed,
        classes=CLASSES,
        what="validation",
        origin="here",
        groups=groups,
    )


def test_stratified_holdout_keeps_each_class_proportion():
    labels = labels_with_counts(50, 20, 10)
    kept, held = split(labels, fraction=0.2)
    assert np.bincount(labels[held]).tolist() == [10, 4, 2]
    assert np.bincount(labels[kept]).tolist() == [40, 16, 8]
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(80))
    assert np.all(np.diff(held) > 0)  # original order


def test_holdout_is_deterministic_by_seed():
    labels = labels_with_counts(30, 30, 30)
    assert np.array_equal(split(labels, seed=1)[1], split(labels, seed=1)[1])
    assert not np.array_equal(split(labels, seed=1)[1], split(labels, seed=2)[1])


def test_small_classes_keep_one_example_on_each_side():
    labels = labels_with_counts(2, 3, 40)
    kept, held = split(labels, fraction=0.1)
    assert np.bincount(labels[held]).tolist() == [1, 1, 4]
    assert np.bincount(labels[kept]).tolist() == [1, 2, 36]


def test_a_class_with_one_example_cannot_be_split():
    with pytest.raises(
        UserError, match=r"here: class 'b' has 1 example\(s\); at least 2 are needed"
    ):
        split(labels_with_counts(5, 1, 5))


def test_grouped_holdout_never_cuts_a_group():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    groups = np.array([f"g{i}" for i in rng.integers(0, 10, size=300)])
    for seed in range(5):
        kept, held = split(labels, fraction=0.2, seed=seed, groups=groups)
        assert not set(groups[kept]) & set(groups[held])
        assert len(set(groups[held])) >= 1 and len(kept) + len(held) == 300


def test_grouped_holdout_needs_two_groups_and_every_class_in_training():
    labels = labels_with_counts(4, 4, 4)
    with pytest.raises(UserError, match=r"single value \('x'\)"):
        split(labels, groups=np.array(["x"] * 12))
    # Each class lives in one group only: the held-out group takes a class with it.
    groups = np.array(["x"] * 4 + ["y"] * 4 + ["z"] * 4)
    with pytest.raises(UserError, match=r"class '.' has no training examples left"):
        split(labels, groups=groups)


def test_where_selects_by_field_values():
    examples = Examples(
        x=np.zeros((4, 1, 1, 1), np.float32),
        labels=np.zeros(4, np.int64),
        fields={"index": np.array(["0", "1", "2", "3"]), "who": np.array(["a", "b", "a", "b"])},
    )
    assert where(examples, {"index": ["1", "2"]}, "here").tolist() == [False, True, True, False]
    assert where(examples, {"index": ["1", "2"], "who": ["a"]}, "here").tolist() == [
        False,
        False,
        True,
        False,
    ]
    with pytest.raises(UserError, match=r"every file matches"):
        where(examples, {"who": ["a", "b"]}, "here")


def test_cap_per_class_is_seeded_and_caps_only_big_classes():
    labels = labels_with_counts(10, 3, 7)
    kept = cap_per_class(labels, cap=5, seed=0)
    assert np.bincount(labels[kept]).tolist() == [5, 3, 5]
    assert np.array_equal(kept, cap_per_class(labels, cap=5, seed=0))
    assert not np.array_equal(kept, cap_per_class(labels, cap=5, seed=1))
