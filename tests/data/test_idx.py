from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from datagen import digit_images, idx_bytes, write_idx

from evotune.data import DataConfig, load_data
from evotune.errors import UserError


def idx_config(path, **extra) -> DataConfig:
    return DataConfig(source="idx", path=str(path), **extra)


@pytest.mark.parametrize("gz", [True, False])
def test_train_and_t10k_pairs_give_train_val_and_test(tmp_path, gz):
    images, labels = digit_images(100)
    test_images, test_labels = digit_images(30, seed=1)
    write_idx(tmp_path, "train", images, labels, gz=gz)
    write_idx(tmp_path, "t10k", test_images, test_labels, gz=gz)
    data = load_data(idx_config(tmp_path))
    assert data.classes == [str(d) for d in range(10)]
    assert data.input_shape == (1, 28, 28)
    assert len(data.train) + len(data.val) == 100
    assert len(data.val) == 20  # 2 of the 10 per class
    assert data.test is not None and len(data.test) == 30
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    # The t10k files are the test split, in order, scaled to [0, 1].
    expected = torch.from_numpy(test_images[:, None].astype(np.float32) / 255)
    assert torch.equal(data.test.x, expected)
    assert data.test.y.tolist() == test_labels.tolist()


def test_scaling_keeps_pixel_values_and_labels_together(tmp_path):
    images, labels = digit_images(50)
    write_idx(tmp_path, "train", images, labels)
    data = load_data(idx_config(tmp_path))
    for split in (data.train, data.val):
        # digit_images: brightness 20 * label + noise in [0, 20)
        label_from_pixels = (split.x.mean(dim=(1, 2, 3)) * 255 // 20).long()
        assert torch.equal(label_from_pixels, split.y)
        assert 0.0 <= split.x.min() and split.x.max() <= 1.0


def test_a_single_pair_is_all_the_data_and_test_fraction_carves_a_test_set(tmp_path):
    images, labels = digit_images(100)
    write_idx(tmp_path, "t10k", images, labels)
    assert load_data(idx_config(tmp_path)).test is None
    data = load_data(idx_config(tmp_path, split={"test_fraction": 0.3}))
    assert len(data.test) == 30
    assert len(data.train) + len(data.val) + len(data.test) == 100
    assert data.test.counts(10) == [3] * 10


def test_dot_separated_names_are_found(tmp_path):
    images, labels = digit_images(20)
    write_idx(tmp_path, "train", images, labels, gz=False)
    for kind in ("images-idx3", "labels-idx1"):
        old = tmp_path / f"train-{kind}-ubyte"
        old.rename(tmp_path / f"train-{kind.replace('-', '.', 1)}-ubyte")
    assert len(load_data(idx_config(tmp_path)).train) == 10


def test_wrong_magic_number_names_the_file(tmp_path):
    images, labels = digit_images(20)
    _, labels_path = write_idx(tmp_path, "train", images, labels)
    labels_path.write_bytes(gzip.compress(idx_bytes(labels, magic=2051)))
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte\.gz: not an IDX labels file"):
        load_data(idx_config(tmp_path))


def test_truncated_data_names_the_file_and_the_sizes(tmp_path):
    images, labels = digit_images(20)
    images_path, _ = write_idx(tmp_path, "train", images, labels, gz=False)
    images_path.write_bytes(images_path.read_bytes()[:-5])
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte: header says 20 x 28 x 28"):
        load_data(idx_config(tmp_path))


def test_count_mismatch_names_both_files(tmp_path):
    images, labels = digit_images(20)
    write_idx(tmp_path, "train", images, labels[:19])
    with pytest.raises(UserError, match=r"20 images but .*train-labels-idx1-ubyte.gz has 19"):
        load_data(idx_config(tmp_path))


def test_bad_gzip_names_the_file(tmp_path):
    images, labels = digit_images(20)
    images_path, _ = write_idx(tmp_path, "train", images, labels)
    images_path.write_bytes(images_path.read_bytes()[:40])
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte.gz: unreadable gzip"):
        load_data(idx_config(tmp_path))


def test_half_a_pair_names_the_missing_file(tmp_path):
    images, labels = digit_images(20)
    _, labels_path = write_idx(tmp_path, "train", images, labels)
    labels_path.unlink()
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte.gz: found, but not .*labels"):
        load_data(idx_config(tmp_path))


def test_train_and_test_sizes_must_agree(tmp_path):
    write_idx(tmp_path, "train", *digit_images(20))
    write_idx(tmp_path, "t10k", *digit_images(10, size=32))
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte.gz: images are 32x32"):
        load_data(idx_config(tmp_path))


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(UserError, match=r"data.path: .*nowhere.* does not exist"):
        load_data(idx_config(tmp_path / "nowhere"))
    with pytest.raises(UserError, match=r"no IDX files"):
        load_data(idx_config(tmp_path))


def test_own_test_set_and_test_fraction_conflict(tmp_path):
    write_idx(tmp_path, "train", *digit_images(20))
    write_idx(tmp_path, "t10k", *digit_images(20))
    with pytest.raises(UserError, match=r"already has a test set \(the t10k files\)"):
        load_data(idx_config(tmp_path, split={"test_fraction": 0.2}))
