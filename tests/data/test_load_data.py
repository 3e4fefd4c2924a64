from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datagen import digit_images, write_idx

from evotune.data import DataConfig, Dataset, load_data
from evotune.errors import UserError


@pytest.fixture
def mnist_like(tmp_path):
    """200 training images (20 per digit) and 50 test images; brightness = 20 * label."""
    write_idx(tmp_path, "train", *digit_images(200))
    write_idx(tmp_path, "t10k", *digit_images(50, seed=1))
    return tmp_path


def idx(path, **extra) -> DataConfig:
    return DataConfig(source="idx", path=str(path), **extra)


def digit_of(x: torch.Tensor) -> torch.Tensor:
    """The digit digit_images painted into each image."""
    return (x.mean(dim=(1, 2, 3)) * 255 // 20).long()


def test_digits_is_the_default_source():
    data = load_data(DataConfig())
    assert data.classes == [str(d) for d in range(10)]
    assert data.input_shape == (1, 8, 8)
    assert len(data.train) + len(data.val) == 1797 and data.test is None
    assert data.train.x.dtype == torch.float32 and float(data.train.x.max()) == 1.0
    assert data.val.counts(10) == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]  # 20% per class


def test_classes_subset_relabels_in_the_given_order(mnist_like):
    data = load_data(idx(mnist_like, classes=[7, "2", 4]))
    assert data.classes == ["7", "2", "4"]
    for split in data.splits().values():
        painted = digit_of(split.x)
        assert set(painted.tolist()) == {7, 2, 4}
        assert torch.equal(torch.tensor([7, 2, 4])[split.y], painted)
    assert len(data.test) == 15


def test_classes_by_label_when_names_are_not_numbers(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((9, 4, 4), np.uint8), y=np.array(["x", "y", "z"] * 3))
    data = load_data(DataConfig(source="npz", path=str(tmp_path / "d.npz"), classes=[2, "x"]))
    assert data.classes == ["z", "x"]


def test_ints_are_names_when_class_names_are_numbers(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((9, 4, 4), np.uint8), y=np.array([3, 7, 11] * 3))
    config = {"source": "npz", "path": str(tmp_path / "d.npz")}
    assert load_data(DataConfig(**config, classes=[11, 3])).classes == ["11", "3"]
    with pytest.raises(UserError, match=r"unknown class 0 in .*d.npz; classes: 3, 7, 11"):
        load_data(DataConfig(**config, classes=[0]))


def test_unknown_or_repeated_classes(mnist_like):
    with pytest.raises(
        UserError, match=r"data.classes: unknown class 'seven' in .*; classes: 0, 1"
    ):
        load_data(idx(mnist_like, classes=["seven"]))
    with pytest.raises(UserError, match=r"data.classes: unknown class 12 in "):
        load_data(idx(mnist_like, classes=[12]))
    with pytest.raises(UserError, match=r"listed twice"):
        load_data(idx(mnist_like, classes=[3, "3"]))


def test_max_per_class_caps_training_only(mnist_like):
    full = load_data(idx(mnist_like))
    few = load_data(idx(mnist_like, max_per_class=3))
    assert few.train.counts(10) == [3] * 10
    assert torch.equal(few.val.x, full.val.x) and torch.equal(few.test.x, full.test.x)
    again = load_data(idx(mnist_like, max_per_class=3))
    assert torch.equal(few.train.x, again.train.x)
    other_seed = load_data(idx(mnist_like, max_per_class=3, split={"seed": 5}))
    assert not torch.equal(few.train.x, other_seed.train.x)


def test_splits_are_disjoint_stratified_and_seeded(mnist_like):
    data = load_data(idx(mnist_like, split={"val_fraction": 0.25}))
    assert data.val.counts(10) == [5] * 10 and data.train.counts(10) == [15] * 10
    train_rows = {tuple(row.tolist()) for row in data.train.x.flatten(1)}
    assert not any(tuple(row.tolist()) in train_rows for row in data.val.x.flatten(1))
    same = load_data(idx(mnist_like, split={"val_fraction": 0.25}))
    assert torch.equal(same.val.x, data.val.x)


def test_test_fraction_with_one_pair(tmp_path):
    write_idx(tmp_path, "train", *digit_images(200))
    data = load_data(idx(tmp_path, split={"test_fraction": 0.1, "val_fraction": 0.25}))
    assert data.test.counts(10) == [2] * 10
    assert data.val.counts(10) == [4] * 10  # a quarter of the 18 left per class, rounded
    assert len(data.train) + len(data.val) + len(data.test) == 200


def test_describe_is_json_with_counts_per_split_and_class(mnist_like):
    data = load_data(idx(mnist_like, classes=[0, 1]))
    described = json.loads(json.dumps(data.describe()))
    assert described["classes"] == ["0", "1"]
    assert described["input_shape"] == [1, 28, 28]
    assert described["splits"]["train"] == {"examples": 32, "per_class": {"0": 16, "1": 16}}
    assert described["splits"]["test"]["examples"] == 10
    assert described["notes"] == []


def test_a_class_too_small_to_split_names_the_data(tmp_path):
    images, _ = digit_images(19)
    labels = np.r_[0:10, 0:9].astype(np.uint8)  # digit 9 once, every other digit twice
    write_idx(tmp_path, "train", images, labels)
    with pytest.raises(UserError, match=rf"{tmp_path}: class '9' has 1 example"):
        load_data(idx(tmp_path))


def test_dataset_is_what_load_data_returns():
    data = load_data(DataConfig(classes=[0, 1], max_per_class=4))
    assert isinstance(data, Dataset) and data.num_classes == 2
    assert set(data.splits()) == {"train", "val"}
    assert data.train.groups is None and len(data.train) == 8


def test_data_with_one_class_is_bad_input(mnist_like):
    with pytest.raises(UserError, match=r"holds 1 class \['3'\]; classification needs at least 2"):
        load_data(idx(mnist_like, classes=[3]))
