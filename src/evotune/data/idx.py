"""IDX files (MNIST, Fashion-MNIST, KMNIST), gzip-compressed or raw.

`data.path` is a folder holding `train-images-idx3-ubyte[.gz]` + `train-labels-idx1-ubyte[.gz]`
and/or the `t10k-*` pair. With both pairs, t10k is the test set; with one pair, that
pair is all the data (and `split.test_fraction` may carve a test set from it).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from evotune.data.config import DataConfig
from evotune.data.labels import as_strings, encode, sort_names
from evotune.data.raw import Examples, Loaded, existing
from evotune.errors import UserError

IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension


def load_idx(config: DataConfig) -> Loaded:
    folder = existing(config.path, "folder")
    pairs = {prefix: _find_pair(folder, prefix) for prefix in ("train", "t10k")}
    found = {prefix: pair for prefix, pair in pairs.items() if pair is not None}
    if not found:
        raise UserError(
            f"{folder}: no IDX files; expected train-images-idx3-ubyte[.gz] and "
            "train-labels-idx1-ubyte[.gz], or the t10k-* pair"
        )
    read = {prefix: _read_pair(*pair) for prefix, pair in found.items()}
    main_prefix = "train" if "train" in read else "t10k"
    _check_same_size(read, found)
    classes = sort_names(np.concatenate([as_strings(y) for _, y in read.values()]).tolist())
    data = _examples(*read[main_prefix], classes, where=str(found[main_prefix][1]))
    test = None
    if main_prefix == "train" and "t10k" in read:
        test = _examples(*read["t10k"], classes, where=str(found["t10k"][1]))
    return Loaded(
        data=data,
        classes=classes,
        origin=str(folder),
        test=test,
        test_origin=None if test is None else "the t10k files",
    )


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array in one IDX file, after checking its magic number and its length."""
    raw = _read_bytes(path)
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise UserError(f"{path}: not an IDX {kind} file (magic number {found}, expected {magic})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise UserError(
            f"{path}: header says {' x '.join(map(str, dims))} = {expected} bytes of data, "
            f"the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":  # not gzip: a raw IDX file
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"{path}: unreadable gzip data ({err})") from None


def _find_pair(folder: Path, prefix: str) -> tuple[Path, Path] | None:
    images = _find(folder, f"{prefix}-images", "idx3")
    labels = _find(folder, f"{prefix}-labels", "idx1")
    if images is None and labels is None:
        return None
    if images is None or labels is None:
        have, missing = (images, "labels") if labels is None else (labels, "images")
        raise UserError(f"{have}: found, but not the matching {prefix}-{missing} IDX file")
    return images, labels


def _find(folder: Path, stem: str, kind: str) -> Path | None:
    # "train-images-idx3-ubyte" is the official name; "train-images.idx3-ubyte" is common too.
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            candidate = folder / f"{stem}{sep}{kind}-ubyte{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise UserError(
            f"{images_path}: {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    return images, labels


def _check_same_size(read: dict[str, tuple], found: dict[str, tuple[Path, Path]]) -> None:
    if len(read) == 2 and read["train"][0].shape[1:] != read["t10k"][0].shape[1:]:
        train_shape, test_shape = read["train"][0].shape[1:], read["t10k"][0].shape[1:]
        raise UserError(
            f"{found['t10k'][0]}: images are {test_shape[0]}x{test_shape[1]}, but "
            f"{found['train'][0]} has {train_shape[0]}x{train_shape[1]}"
        )


def _examples(images: np.ndarray, labels: np.ndarray, classes: list[str], where: str) -> Examples:
    x = images[:, None, :, :].astype(np.float32) / np.float32(255.0)
    return Examples(x=x, labels=encode(as_strings(labels), classes, where))
