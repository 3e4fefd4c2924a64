"""Writers of small datasets in tmp_path: IDX files, image folders and FSDD-like WAVs.

Imported by the tests as `datagen` (pytest puts this folder on sys.path)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

# Pitch per class: a spectrogram's loudest mel band rises with it.
TONES = {"0": 300.0, "1": 900.0, "2": 2000.0}
SPEAKERS = ("ann", "bob", "cid", "dan")


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(
    folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool = True
) -> tuple[Path, Path]:
    """Write `{prefix}-images-idx3-ubyte[.gz]` and the labels file; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    pair = []
    for kind, array, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
        path = folder / f"{prefix}-{kind}-ubyte{suffix}"
        data = idx_bytes(array, magic)
        path.write_bytes(gzip.compress(data) if gz else data)
        pair.append(path)
    return pair[0], pair[1]


def digit_images(n: int, seed: int = 0, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 images whose mean brightness encodes their label (0..9), labels cycling."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 20, size=(n, size, size)) + labels[:, None, None] * 20
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_images(
    root: Path, per_class: dict[str, int], mode: str = "L", size=(12, 10), suffix=".png"
) -> dict[str, list[Path]]:
    """PIL images under root/<class>/; pixel value 40 * class index + 10 (size = (W, H))."""
    written: dict[str, list[Path]] = {}
    for k, (name, count) in enumerate(per_class.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        color = 40 * k + 10 if mode == "L" else (40 * k + 10, 5, 200)
        written[name] = []
        for i in range(count):
            path = folder / f"img{i}{suffix}"
            Image.new(mode, size, color=color).save(path)
            written[name].append(path)
    return written


def tone(frequency: float, seconds: float = 0.3, rate: int = 8000, loud: float = 0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (loud * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def write_fsdd(
    root: Path,
    classes=tuple(TONES),
    speakers=SPEAKERS[:2],
    indices=range(4),
    rate: int = 8000,
    suffix: str = ".wav",
) -> list[Path]:
    """FSDD-like `{label}_{speaker}_{index}.wav` sine tones, one pitch per class."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for label in classes:
        for s, speaker in enumerate(speakers):
            for index in indices:
                # Speakers and indices shift the pitch a little: files differ in content.
                signal = tone(TONES[label] * (1 + 0.02 * s + 0.005 * index), rate=rate)
                path = root / f"{label}_{speaker}_{index}{suffix}"
                soundfile.write(path, signal, rate)
                paths.append(path)
    return paths


# Small pipeline settings keep the audio tests fast: 0.5 s at 8 kHz, 16 mel bands.
FAST_AUDIO = {
    "sample_rate": 8000,
    "duration": 0.5,
    "n_mels": 16,
    "n_fft": 256,
    "hop_length": 128,
}
FSDD_LABEL = {"pattern": "{label}_{speaker}_{index}.wav"}
