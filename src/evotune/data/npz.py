"""`.npz` files holding arrays `x` and `y` (loaded with allow_pickle=False).

x: (N, H, W), (N, H, W, C) or (N, C, H, W). With `layout: auto`, a 4-D x is read as
NHWC when its last axis has 1, 3 or 4 entries and axis 1 does not, else as NCHW.
Scaling: uint8 / 255, uint16 / 65535, anything else converted to float32 unchanged.
y: (N,) integer or string labels; class names are their distinct values, sorted.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from evotune.data.config import DataConfig
from evotune.data.labels import as_strings, encode, sort_names
from evotune.data.raw import Examples, Loaded, existing
from evotune.errors import UserError

_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def load_npz(config: DataConfig) -> Loaded:
    path = existing(config.path, "file")
    x, y = read_npz(path, config.layout)
    classes = sort_names(y.tolist())
    loaded = Loaded(
        data=Examples(x=x, labels=encode(y, classes, str(path))),
        classes=classes,
        origin=str(path),
    )
    if config.test_path is not None:
        test_path = existing(config.test_path, "file", key="data.test_path")
        test_x, test_y = read_npz(test_path, config.layout)
        if test_x.shape[1:] != x.shape[1:]:
            raise UserError(
                f"{test_path}: x has shape (C, H, W) = {test_x.shape[1:]}, "
                f"but {path} has {x.shape[1:]}"
            )
        loaded.test = Examples(x=test_x, labels=encode(test_y, classes, str(test_path)))
        loaded.test_origin = str(test_path)
    return loaded


def read_npz(path: Path, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """x as float32 (N, C, H, W) and y as strings, checked against each other."""
    x, y = _arrays(path)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise UserError(f"{path}: y must be 1-D (one label per example), got shape {y.shape}")
    if len(x) != len(y):
        raise UserError(f"{path}: x has {len(x)} examples but y has {len(y)} labels")
    return _images(x, layout, path), _labels(y, path)


def _arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: not a readable .npz file ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"{path}: a single .npy array; expected an .npz with arrays x and y")
    with archive:
        missing = [name for name in ("x", "y") if name not in archive.files]
        if missing:
            found = ", ".join(archive.files) or "none"
            raise UserError(f"{path}: no array {missing[0]!r} (found: {found})")
        try:
            return archive["x"], archive["y"]
        except ValueError:  # object arrays need pickle, which evotune never uses
            raise UserError(f"{path}: x or y is an object array; save plain arrays") from None
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise UserError(f"{path}: unreadable array ({err})") from None


def _images(x: np.ndarray, layout: str, path: Path) -> np.ndarray:
    if x.dtype.kind not in "uifb":
        raise UserError(f"{path}: x must be numeric, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if layout == "nhwc" or (layout == "auto" and _looks_nhwc(x.shape)):
            x = x.transpose(0, 3, 1, 2)
    else:
        raise UserError(
            f"{path}: x must be (N, H, W), (N, H, W, C) or (N, C, H, W), got shape {x.shape}"
        )
    scale = _SCALE.get(x.dtype, 1.0)
    return np.ascontiguousarray(x, dtype=np.float32) / np.float32(scale)


def _looks_nhwc(shape: tuple[int, ...]) -> bool:
    return shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4)


def _labels(y: np.ndarray, path: Path) -> np.ndarray:
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise UserError(f"{path}: y holds non-integer floats; labels must be integers or strings")
    if y.dtype.kind not in "uibfU":
        raise UserError(f"{path}: y must hold integer or string labels, got dtype {y.dtype}")
    return as_strings(y)
