"""prune's k-fold fitness respects `split.group_by`: no group on both sides of a fold."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from evotune.errors import UserError
from evotune.prune.featureset import FeatureSet, _pooled_groups


def features(groups: np.ndarray | None, n_train: int = 48, n_val: int = 12) -> FeatureSet:
    y = torch.arange(n_train + n_val) % 3
    x = torch.randn(n_train + n_val, 4)
    return FeatureSet(x[:n_train], y[:n_train], x[n_train:], y[n_train:], None, None,
                      None, None, n_classes=3, groups=groups)  # fmt: skip


def test_folds_never_split_a_group():
    groups = np.repeat(np.array(list("abcdef")), 10)  # six speakers, ten clips each
    for train, held in features(groups).folds(3, seed=0):
        assert not set(groups[train.numpy()]) & set(groups[held.numpy()])
        assert len(train) + len(held) == 60


def test_without_groups_folds_are_plain_stratified():
    folds = features(None).folds(3, seed=0)
    assert sorted(np.concatenate([h.numpy() for _, h in folds]).tolist()) == list(range(60))


def test_fewer_groups_than_folds_is_bad_input():
    with pytest.raises(UserError, match="fitness.folds: 4 folds need 4 groups"):
        features(np.repeat(np.array(list("abc")), 20)).folds(4, seed=0)


def test_groups_are_pooled_in_training_then_validation_order():
    data = SimpleNamespace(train=SimpleNamespace(groups=["a", "b"]),
                           val=SimpleNamespace(groups=["c"]))  # fmt: skip
    assert _pooled_groups(data).tolist() == ["a", "b", "c"]
    none = SimpleNamespace(groups=None)
    assert _pooled_groups(SimpleNamespace(train=none, val=none)) is None
