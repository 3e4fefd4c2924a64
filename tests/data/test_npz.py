from __future__ import annotations

import numpy as np
import pytest
import torch

from evotune.data import DataConfig, load_data
from evotune.errors import UserError


def npz_config(path, **extra) -> DataConfig:
    return DataConfig(source="npz", path=str(path), **extra)


def save(path, x, y, **more):
    np.savez(path, x=x, y=y, **more)
    return path


def all_examples(data):
    return torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y])


def labelled_images(n: int, shape: tuple[int, ...], dtype=np.uint8):
    """Images whose every value equals 10 * label; labels cycle over 0..4."""
    y = np.arange(n) % 5
    x = np.broadcast_to((10 * y).reshape(n, *[1] * len(shape)), (n, *shape)).astype(dtype)
    return x, y


@pytest.mark.parametrize(
    ("shape", "input_shape"),
    [
        ((6, 7), (1, 6, 7)),  # (N, H, W)
        ((6, 7, 3), (3, 6, 7)),  # (N, H, W, C)
        ((3, 6, 7), (3, 6, 7)),  # (N, C, H, W)
        ((1, 6, 7), (1, 6, 7)),
        ((6, 7, 1), (1, 6, 7)),
    ],
)
def test_layouts_and_uint8_scaling(tmp_path, shape, input_shape):
    x, y = labelled_images(20, shape)
    data = load_data(npz_config(save(tmp_path / "d.npz", x, y)))
    assert data.input_shape == input_shape
    xs, ys = all_examples(data)
    assert torch.allclose(xs.amax(dim=(1, 2, 3)), ys.float() * 10 / 255)


def test_explicit_layout_overrides_the_guess(tmp_path):
    x = np.zeros((10, 3, 5, 3), dtype=np.float32)  # ambiguous: both axes could be channels
    y = np.arange(10) % 2
    path = save(tmp_path / "d.npz", x, y)
    assert load_data(npz_config(path)).input_shape == (3, 5, 3)
    assert load_data(npz_config(path, layout="nhwc")).input_shape == (3, 3, 5)


def test_floats_are_kept_and_string_labels_become_sorted_classes(tmp_path):
    x = np.linspace(-2, 2, 20 * 16, dtype=np.float64).reshape(20, 4, 4)
    y = np.array(["dog", "cat"] * 10)
    data = load_data(npz_config(save(tmp_path / "d.npz", x, y)))
    assert data.classes == ["cat", "dog"]
    xs, ys = all_examples(data)
    assert xs.dtype == torch.float32 and xs.min() < -1.5 and xs.max() > 1.5
    order = torch.argsort(xs.amin(dim=(1, 2, 3)))
    assert ys[order].tolist() == [1 if label == "dog" else 0 for label in y]


def test_sparse_integer_labels_are_relabelled_with_their_names(tmp_path):
    x = np.zeros((12, 4, 4), dtype=np.uint8)
    y = np.array([7, 3, 11] * 4)
    data = load_data(npz_config(save(tmp_path / "d.npz", x, y)))
    assert data.classes == ["3", "7", "11"]
    assert sorted(torch.cat([data.train.y, data.val.y]).tolist()) == [0] * 4 + [1] * 4 + [2] * 4


def test_test_path_gives_the_test_split(tmp_path):
    x, y = labelled_images(20, (4, 4))
    test_x, test_y = labelled_images(5, (4, 4))
    data = load_data(
        npz_config(
            save(tmp_path / "a.npz", x, y), test_path=str(save(tmp_path / "t.npz", test_x, test_y))
        )
    )
    assert data.test.y.tolist() == [0, 1, 2, 3, 4]
    assert torch.allclose(data.test.x.amax(dim=(1, 2, 3)), data.test.y.float() * 10 / 255)


def test_test_labels_must_be_training_classes(tmp_path):
    x, y = labelled_images(10, (4, 4))
    path = save(tmp_path / "a.npz", x, y)
    test = save(tmp_path / "t.npz", x[:2], np.array([0, 9]))
    with pytest.raises(UserError, match=r"t.npz: label '9' is not one of the training classes"):
        load_data(npz_config(path, test_path=str(test)))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"x": np.zeros((5, 4, 4)), "y": np.zeros(4)},
            r"d.npz: x has 5 examples but y has 4 labels",
        ),
        ({"x": np.zeros((5, 4, 4))}, r"d.npz: no array 'y' \(found: x\)"),
        (
            {"x": np.zeros((5, 16)), "y": np.zeros(5)},
            r"d.npz: x must be \(N, H, W\).*got shape \(5, 16\)",
        ),
        ({"x": np.zeros((5, 4, 4)), "y": np.full(5, 0.5)}, r"d.npz: y holds non-integer floats"),
        (
            {"x": np.zeros((2, 4, 4)), "y": np.array([{"a": 1}, None])},
            r"d.npz: x or y is an object array",
        ),
    ],
)
def test_bad_arrays_name_the_file(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(UserError, match=message):
        load_data(npz_config(tmp_path / "d.npz"))


def test_unreadable_or_missing_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"definitely not a zip")
    with pytest.raises(UserError, match=r"junk.npz: not a readable .npz file"):
        load_data(npz_config(tmp_path / "junk.npz"))
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(UserError, match=r"single.npy: a single .npy array"):
        load_data(npz_config(tmp_path / "single.npy"))
    with pytest.raises(UserError, match=r"data.path: .*missing.npz' does not exist"):
        load_data(npz_config(tmp_path / "missing.npz"))
