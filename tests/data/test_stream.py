"""Data larger than memory: image folders and audio read from disk batch by batch give
the same batches as the data decoded into memory (`data.in_memory`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datagen import FAST_AUDIO, FSDD_LABEL, write_fsdd
from PIL import Image

from evotune.data import DataConfig, Split, StreamedSplit, load_data
from evotune.errors import UserError


def noise_images(root, per_class=6, size=(9, 7), mode="RGB"):
    """Noisy images, a different mean per class, so that every pixel differs."""
    rng = np.random.default_rng(0)
    channels = 3 if mode == "RGB" else 1
    for k, name in enumerate(["cat", "dog", "eel"]):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 160, size=(size[1], size[0], channels)) + 40 * k
            Image.fromarray(pixels.astype(np.uint8).squeeze(), mode).save(root / name / f"{i}.png")


def folder(path, **extra) -> DataConfig:
    return DataConfig(source="imagefolder", path=str(path), split={"test_fraction": 0.2}, **extra)


def batches(split, order, batch_size=4):
    return [(x.clone(), y.clone()) for x, y in split.batches(order, batch_size)]


def assert_same_batches(a, b, order):
    for (xa, ya), (xb, yb) in zip(batches(a, order), batches(b, order), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_image_folder_gives_the_in_memory_batches(tmp_path, workers):
    noise_images(tmp_path)
    memory = load_data(folder(tmp_path, in_memory=True), streaming=True)
    disk = load_data(folder(tmp_path, in_memory=False, stream_workers=workers), streaming=True)
    assert isinstance(memory.train, Split) and isinstance(disk.train, StreamedSplit)
    assert disk.describe()["splits"] == memory.describe()["splits"]
    assert disk.input_shape == memory.input_shape == (3, 7, 9)
    assert disk.notes == ["streaming 18 examples from disk (0.0 GB decoded; data.in_memory: false)"]
    order = torch.randperm(len(memory.train), generator=torch.Generator().manual_seed(3))
    assert_same_batches(memory.train, disk.train, order)
    for name in ("val", "test"):
        assert_same_batches(memory.splits()[name], disk.splits()[name], None)


def test_auto_streams_above_memory_gb_and_decodes_below(tmp_path):
    noise_images(tmp_path)
    small = load_data(folder(tmp_path, memory_gb=1e-6), streaming=True)  # 18 x 756 bytes
    assert isinstance(small.train, StreamedSplit)
    assert "above data.memory_gb" in small.notes[0]
    assert isinstance(load_data(folder(tmp_path), streaming=True).train, Split)


def test_a_caller_that_needs_memory_decodes_or_refuses(tmp_path):
    noise_images(tmp_path)
    decoded = load_data(folder(tmp_path, memory_gb=1e-6))
    assert isinstance(decoded.train, Split)
    assert decoded.notes[0].startswith("decoding 18 examples into memory")
    in_memory = load_data(folder(tmp_path, in_memory=True))
    assert torch.equal(decoded.train.x, in_memory.train.x)
    with pytest.raises(UserError, match=r"data.in_memory: false, but this command needs"):
        load_data(folder(tmp_path, in_memory=False))


def test_damaged_pixel_data_is_named_when_a_batch_reads_it(tmp_path):
    noise_images(tmp_path)
    good = (tmp_path / "cat" / "0.png").read_bytes()
    (tmp_path / "cat" / "0.png").write_bytes(good[: len(good) // 2])  # header intact
    data = load_data(folder(tmp_path, in_memory=False, stream_workers=0), streaming=True)
    with pytest.raises(UserError, match=r"cat/0.png: unreadable .*while streaming"):
        for split in data.splits().values():
            batches(split, None)


def test_streamed_audio_gives_the_in_memory_spectrograms(tmp_path):
    write_fsdd(tmp_path / "wav")
    settings = {**FAST_AUDIO, "cache_dir": str(tmp_path / "cache")}

    def config(**extra):
        return DataConfig(
            source="audio", path=str(tmp_path / "wav"), label=FSDD_LABEL, audio=settings, **extra
        )

    disk = load_data(config(in_memory=False, stream_workers=0), streaming=True)  # fills the cache
    memory = load_data(config(), streaming=True)
    assert isinstance(disk.train, StreamedSplit) and isinstance(memory.train, Split)
    order = torch.randperm(len(memory.train), generator=torch.Generator().manual_seed(1))
    assert_same_batches(memory.train, disk.train, order)
    for entry in (tmp_path / "cache").glob("*.npy"):
        entry.unlink()  # a cleaned cache: the spectrograms are computed again
    assert_same_batches(memory.val, disk.val, None)


def test_in_memory_keys_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"in_memory applies to source imagefolder or audio"):
        DataConfig(in_memory=False)
    with pytest.raises(ValueError, match=r"set audio.cache: true"):
        DataConfig(source="audio", path=str(tmp_path), in_memory=False, audio={"cache": False})
    assert DataConfig(source="imagefolder", path=".", in_memory="auto").in_memory == "auto"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_streamed_batches_reach_the_gpu_through_pinned_memory(tmp_path):
    noise_images(tmp_path)
    memory = load_data(folder(tmp_path, in_memory=True), streaming=True).train.to("cuda")
    disk = load_data(folder(tmp_path, in_memory=False, stream_workers=1), streaming=True)
    disk = disk.train.to("cuda")
    order = torch.randperm(len(memory))
    for (xa, ya), (xb, yb) in zip(memory.batches(order, 4), disk.batches(order, 4), strict=True):
        assert xb.is_cuda and yb.is_cuda
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
