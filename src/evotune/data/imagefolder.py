"""One sub-folder per class of PNG/JPEG/BMP images (read with PIL).

Class names are the sub-folder names, sorted (numeric names in numeric order).
`color`: gray or rgb (default gray when every image is single-channel). Without
`image_size` every image must have the same size. Images are decoded into memory, or,
when `data.in_memory` says so, kept on disk and read batch by batch (`ImageFiles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from evotune.data.config import DataConfig
from evotune.data.labels import sort_names
from evotune.data.raw import ErrorPolicy, Examples, Loaded, existing
from evotune.data.stream import FileInputs, streams
from evotune.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass
class _Image:
    path: Path
    class_name: str
    mode: str
    size: tuple[int, int]  # (H, W)


def load_imagefolder(config: DataConfig) -> Loaded:
    policy = ErrorPolicy(skip=config.on_error == "skip")
    root = existing(config.path, "folder")
    train_files = list_class_files(root)
    classes = sort_names(name for _, name in train_files)
    train = _probe(train_files, policy)
    test_files, test = None, None
    if config.test_path is not None:
        test_root = existing(config.test_path, "folder", key="data.test_path")
        test_files = list_class_files(test_root)
        _check_known(test_files, classes)
        test = _probe(test_files, policy)
    everything = train + (test or [])
    color = config.color or ("gray" if all(i.mode in GRAY_MODES for i in everything) else "rgb")
    size = tuple(config.image_size) if config.image_size else _common_size(everything, root)
    item_shape = (1 if color == "gray" else 3, *size)
    on_disk = streams(config.in_memory, config.memory_gb, len(everything), item_shape)
    read = _files if on_disk else _decode
    loaded = Loaded(
        data=read(train, train_files, classes, color, size, policy),
        classes=classes,
        origin=str(root),
    )
    if test is not None and test_files is not None:
        loaded.test = read(test, test_files, classes, color, size, policy)
        loaded.test_origin = str(config.test_path)
    loaded.notes = policy.notes()
    return loaded


def list_class_files(root: Path) -> list[tuple[Path, str]]:
    """(file, class name) for every image under root/<class>/ (sorted, recursive)."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UserError(f"{root}: no class sub-folders; expected {root}/<class>/*.png")
    found = []
    for folder in folders:
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
        if not files:
            raise UserError(f"{folder}: empty class folder (no .png, .jpg, .jpeg or .bmp files)")
        found += [(path, folder.name) for path in files]
    return found


def _probe(files: list[tuple[Path, str]], policy: ErrorPolicy) -> list[_Image]:
    """Mode and size of every readable image, from its header (no decoding yet)."""
    probed = []
    for path, class_name in files:
        try:
            with Image.open(path) as image:
                probed.append(_Image(path, class_name, image.mode, (image.height, image.width)))
        except Exception as err:  # PIL raises many types (OSError, SyntaxError, ...)
            policy.bad_file(path, f"unreadable image ({err})")
    return probed


def _common_size(images: list[_Image], root: Path) -> tuple[int, int]:
    if not images:
        raise UserError(f"{root}: no readable images")
    first = images[0]
    for item in images:
        if item.size != first.size:
            raise UserError(
                f"{item.path}: size {item.size[0]}x{item.size[1]} (HxW) differs from "
                f"{first.size[0]}x{first.size[1]} of {first.path}; set data.image_size: [H, W]"
            )
    return first.size


def _check_known(files: list[tuple[Path, str]], classes: list[str]) -> None:
    for path, name in files:
        if name not in classes:
            raise UserError(
                f"{path.parent}: class {name!r} is not one of the training classes "
                f"({', '.join(classes)})"
            )


def _decode(
    images: list[_Image],
    files: list[tuple[Path, str]],
    classes: list[str],
    color: str,
    size: tuple[int, int],
    policy: ErrorPolicy,
) -> Examples:
    arrays, labels = [], []
    for item in images:
        try:
            with Image.open(item.path) as image:
                arrays.append(to_array(image, color=color, size=size))
        except Exception as err:  # truncated data only shows when decoding
            policy.bad_file(item.path, f"unreadable image ({err})")
            continue
        labels.append(classes.index(item.class_name))
    _check_classes_left(files, labels, classes)
    channels = 1 if color == "gray" else 3
    x = np.stack(arrays) if arrays else np.zeros((0, channels, *size), dtype=np.float32)
    return Examples(x=x, labels=np.asarray(labels, dtype=np.int64))


def _files(
    images: list[_Image],
    files: list[tuple[Path, str]],
    classes: list[str],
    color: str,
    size: tuple[int, int],
    policy: ErrorPolicy,
) -> Examples:
    """The images kept on disk, checked from their headers only (damaged pixel data
    shows when a batch reads it)."""
    labels = [classes.index(item.class_name) for item in images]
    _check_classes_left(files, labels, classes)
    x = ImageFiles([item.path for item in images], color, size)
    return Examples(x=x, labels=np.asarray(labels, dtype=np.int64))


class ImageFiles(FileInputs):
    """Image files read with `to_array`, the in-memory path's decoder."""

    def __init__(self, paths: list[Path], color: str, size: tuple[int, int]) -> None:
        super().__init__(paths, (1 if color == "gray" else 3, *size))
        self.color, self.size = color, tuple(size)

    def read(self, i: int) -> np.ndarray:
        with Image.open(self.paths[i]) as image:
            return to_array(image, color=self.color, size=self.size)

    def subset(self, rows: np.ndarray) -> ImageFiles:
        return ImageFiles([self.paths[i] for i in rows], self.color, self.size)


def _check_classes_left(files: list[tuple[Path, str]], labels: list[int], classes: list[str]):
    # A class whose every file was skipped would silently vanish: say so instead.
    left = {classes[label] for label in labels}
    for path, name in files:
        if name not in left:
            raise UserError(f"{path.parent}: no readable image in class {name!r}")


def to_array(image: Image.Image, color: str, size: tuple[int, int]) -> np.ndarray:
    """float32 (C, H, W) in [0, 1]: 8-bit values / 255, 16-bit ones / 65535."""
    if color == "rgb":
        image = image.convert("RGB")
    elif image.mode.startswith("I"):
        image = image.convert("I")  # 16-bit gray: keep the full range
    elif image.mode != "F":
        image = image.convert("L")
    if (image.height, image.width) != tuple(size):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32)
    scale = {"RGB": 255.0, "L": 255.0, "I": 65535.0}.get(image.mode, 1.0)
    array = array / np.float32(scale)
    return array.transpose(2, 0, 1) if array.ndim == 3 else array[None]
