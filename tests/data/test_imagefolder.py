from __future__ import annotations

import numpy as np
import pytest
import torch
from datagen import write_images
from PIL import Image

from evotune.data import DataConfig, load_data
from evotune.errors import UserError


def folder_config(path, **extra) -> DataConfig:
    return DataConfig(source="imagefolder", path=str(path), **extra)


def test_gray_pngs_load_scaled_with_sorted_class_names(tmp_path):
    write_images(tmp_path, {"cat": 5, "ant": 5, "bee": 5})
    data = load_data(folder_config(tmp_path))
    assert data.classes == ["ant", "bee", "cat"]
    assert data.input_shape == (1, 10, 12)  # PIL sizes are (W, H) = (12, 10)
    x = torch.cat([data.train.x, data.val.x])
    y = torch.cat([data.train.y, data.val.y])
    # write_images paints class k (in writing order cat, ant, bee) with 40 k + 10.
    painted = {"cat": 10, "ant": 50, "bee": 90}
    expected = torch.tensor([painted[data.classes[label]] / 255 for label in y.tolist()])
    assert torch.allclose(x.amax(dim=(1, 2, 3)), expected)
    assert x.dtype == torch.float32 and y.dtype == torch.int64


def test_numeric_class_folders_sort_as_numbers(tmp_path):
    write_images(tmp_path, {"10": 2, "9": 2, "2": 2})
    assert load_data(folder_config(tmp_path)).classes == ["2", "9", "10"]


def test_color_images_default_to_rgb_and_gray_can_be_forced(tmp_path):
    write_images(tmp_path, {"a": 3}, mode="L")  # value 10
    write_images(tmp_path, {"b": 3}, mode="RGB", suffix=".jpg")  # (10, 5, 200)
    data = load_data(folder_config(tmp_path))
    assert data.input_shape == (3, 10, 12)
    x = torch.cat([data.train.x, data.val.x]).mean(dim=(2, 3))
    y = torch.cat([data.train.y, data.val.y])
    gray, color = x[y == 0], x[y == 1]
    assert torch.allclose(gray, torch.full_like(gray, 10 / 255))  # repeated in R, G, B
    assert torch.allclose(color, torch.tensor([10, 5, 200]) / 255, atol=0.02)  # JPEG
    forced = load_data(folder_config(tmp_path, color="gray"))
    assert forced.input_shape == (1, 10, 12)


def test_image_size_resizes(tmp_path):
    write_images(tmp_path, {"a": 2, "b": 2}, size=(12, 10))
    Image.new("L", (7, 9), color=255).save(tmp_path / "a" / "other.bmp")
    data = load_data(folder_config(tmp_path, image_size=(16, 8)))
    assert data.input_shape == (1, 16, 8)
    x = torch.cat([data.train.x, data.val.x])
    assert len(x) == 5 and torch.isclose(x.max(), torch.tensor(1.0))


def test_different_sizes_name_the_file_and_both_sizes(tmp_path):
    write_images(tmp_path, {"a": 2, "b": 1})
    Image.new("L", (5, 6)).save(tmp_path / "b" / "small.png")
    with pytest.raises(
        UserError, match=r"small.png: size 6x5 \(HxW\) differs from 10x12 of .*img0.png"
    ):
        load_data(folder_config(tmp_path))


def test_sixteen_bit_gray_keeps_its_range(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder, value in (("a", 1000), ("b", 65535)):
        for i in range(2):
            array = np.full((4, 4), value, dtype=np.uint16)
            Image.fromarray(array).save(tmp_path / folder / f"{i}.png")
    data = load_data(folder_config(tmp_path))
    x = torch.cat([data.train.x, data.val.x]).amax(dim=(1, 2, 3))
    assert np.allclose(sorted(set(x.tolist())), [1000 / 65535, 1.0])


def test_empty_class_folder_is_named(tmp_path):
    write_images(tmp_path, {"a": 2})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match=r"empty: empty class folder"):
        load_data(folder_config(tmp_path))


def test_no_class_folders(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "loose.png")
    with pytest.raises(UserError, match=r"no class sub-folders"):
        load_data(folder_config(tmp_path))


def test_unreadable_image_raises_or_is_skipped_and_counted(tmp_path):
    write_images(tmp_path, {"a": 4, "b": 4})
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png at all")
    truncated = (tmp_path / "b" / "img0.png").read_bytes()
    (tmp_path / "b" / "cut.png").write_bytes(truncated[: len(truncated) // 2])
    with pytest.raises(UserError, match=r"broken.png: unreadable image"):
        load_data(folder_config(tmp_path))
    data = load_data(folder_config(tmp_path, on_error="skip"))
    assert len(data.train) + len(data.val) == 8
    assert data.notes and data.notes[0].startswith("skipped 2 bad files")


def test_a_class_with_only_bad_files_is_an_error_even_when_skipping(tmp_path):
    write_images(tmp_path, {"a": 3})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "broken.png").write_bytes(b"junk")
    with pytest.raises(UserError, match=r"/b: no readable image in class 'b'"):
        load_data(folder_config(tmp_path, on_error="skip"))


def test_test_path_is_the_test_split_and_must_use_known_classes(tmp_path):
    write_images(tmp_path / "train", {"a": 4, "b": 4})
    write_images(tmp_path / "test", {"a": 2, "b": 1})
    data = load_data(folder_config(tmp_path / "train", test_path=str(tmp_path / "test")))
    assert data.test.y.tolist() == [0, 0, 1]
    assert len(data.train) + len(data.val) == 8
    write_images(tmp_path / "test", {"zebra": 1})
    with pytest.raises(UserError, match=r"test/zebra: class 'zebra' is not one of the training"):
        load_data(folder_config(tmp_path / "train", test_path=str(tmp_path / "test")))
