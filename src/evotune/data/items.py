"""New data for `evotune predict`, read through a model's recorded pipeline.

The pipeline (data/pipeline.py) comes from the model: spectrogram parameters, input
shape, colour, classes. The data section says where the data is and how it is
labelled: class sub-folders, audio file names matching a pattern (by default the
training's), an npz with `y`, IDX label files. Loose files, an npz without `y`, or
`label: none` give unlabelled items. Every item keeps a name for the CSV: its path
relative to `data.path`, or `file[index]` for arrays.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from evotune.data.audio import AUDIO_SUFFIXES, scaled
from evotune.data.config import DataConfig
from evotune.data.digits import load_digits_source
from evotune.data.idx import load_idx
from evotune.data.imagefolder import IMAGE_SUFFIXES, to_array
from evotune.data.labels import sort_names
from evotune.data.npz import _images, read_npz
from evotune.data.pattern import compile_pattern
from evotune.data.pipeline import AUDIO_KEYS, COLORS, PredictData, PredictLabel, check_against
from evotune.data.raw import ErrorPolicy
from evotune.data.spectrogram import SpectrogramParams, spectrograms
from evotune.errors import UserError
from evotune.paths import cache_dir


@dataclass
class Items:
    """The new data: inputs as the model takes them, names, and labels if known."""

    x: np.ndarray  # float32 (N, C, H, W)
    names: list[str]
    labels: list[str] | None  # class names; None: unlabelled
    origin: str  # for messages: the path read
    notes: list[str] = field(default_factory=list)


def read_items(data: PredictData, pipeline: dict[str, Any]) -> Items:
    """Read `data` as the model's training data was read; UserError when its classes,
    channels or shape differ from the model's."""
    source = check_against(data, pipeline)
    policy = ErrorPolicy(skip=data.on_error == "skip")
    items = READERS[source](data, pipeline, policy)
    items.notes += policy.notes()
    if len(items.names) == 0:
        raise UserError(f"{items.origin}: no {source} data to predict")
    check_classes(items, pipeline["classes"])
    check_shape(items, pipeline["input_shape"])
    if pipeline.get("input_map"):
        items.x = mapped(items.x, pipeline["input_map"])
    return items


def check_classes(items: Items, classes: list[str]) -> None:
    """Labels must be class names of the model (a subset of them is fine)."""
    if items.labels is None:
        return
    unknown = sort_names(set(items.labels) - set(classes))
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:5]) + (
            ", ..." if len(unknown) > 5 else ""
        )
        raise UserError(
            f"{items.origin}: class{'es' * (len(unknown) > 1)} {shown} not among the model's "
            f"classes ({', '.join(classes)}); labels must be the model's class names "
            "(label: none predicts without labels)"
        )


def check_shape(items: Items, shape: list[int]) -> None:
    got, want = tuple(int(n) for n in items.x.shape[1:]), tuple(shape)
    if got == want:
        return
    what = "channels" if got[:1] != want[:1] else "height x width"
    raise UserError(
        f"{items.origin}: inputs of shape (C, H, W) = {got}, the model takes {want}: "
        f"the {what} differ"
    )


def mapped(x: np.ndarray, input_map: dict[str, float]) -> np.ndarray:
    """prune's `input_range` map, in float32 as the run applied it."""
    subtract, multiply = np.float32(input_map["subtract"]), np.float32(input_map["multiply"])
    return (x - subtract) * multiply + np.float32(input_map["add"])


# ---- files and their labels --------------------------------------------------------


def _root(data: PredictData) -> Path:
    if data.path is None:
        raise UserError("data.path: required (the folder or file to predict)")
    root = Path(data.path).expanduser()
    if not root.exists():
        raise UserError(f"data.path: {str(root)!r} does not exist")
    return root


def _files(root: Path, suffixes: set[str]) -> list[Path]:
    """root itself (a file), or every file under it with one of `suffixes` (sorted;
    hidden names such as macOS '._x.wav' twins left out)."""
    if root.is_file():
        return [root]
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()
    )


def _relative(path: Path, root: Path) -> PurePosixPath:
    return PurePosixPath(path.name if root.is_file() else path.relative_to(root).as_posix())


def labelled_files(
    root: Path,
    suffixes: set[str],
    label: PredictLabel | None,
    recorded: dict[str, Any] | None,
    policy: ErrorPolicy,
) -> tuple[list[Path], list[str] | None, list[str]]:
    """(files, labels or None, notes). `label` None: labelled as in training when the
    files allow it (class sub-folders; names matching the training pattern), else
    unlabelled, with a note saying so."""
    files = _files(root, suffixes)
    if not files:
        raise UserError(f"{root}: no files ending in {', '.join(sorted(suffixes))}")
    implicit = label is None
    mode = PredictLabel.model_validate(recorded or {}) if implicit else label
    if mode.from_ == "none":
        return files, None, []
    if mode.from_ == "pattern":
        return _by_pattern(root, files, mode.pattern or "", implicit, policy)
    return _by_folder(root, files, implicit, policy)


def _by_pattern(
    root: Path, files: list[Path], text: str, implicit: bool, policy: ErrorPolicy
) -> tuple[list[Path], list[str] | None, list[str]]:
    pattern = compile_pattern(text)
    fields = [pattern.match(_relative(f, root)) for f in files]
    if implicit and not any(fields):
        return files, None, [f"no file name matches the training's {text!r}: no labels"]
    kept, labels = [], []
    for path, found in zip(files, fields):
        if found is None:
            policy.bad_file(path, f"file name does not match label.pattern {text!r}")
            continue
        kept.append(path)
        labels.append(found["label"])
    return kept, labels, []


def _by_folder(
    root: Path, files: list[Path], implicit: bool, policy: ErrorPolicy
) -> tuple[list[Path], list[str] | None, list[str]]:
    nested = [f for f in files if len(_relative(f, root).parts) > 1]
    if not nested:
        if implicit:
            return files, None, [f"{root}: no class sub-folders: no labels"]
        raise UserError(f"{root}: no class sub-folders for label.from: folder")
    kept, labels = [], []
    for path in files:
        parts = _relative(path, root).parts
        if len(parts) == 1:
            policy.bad_file(path, "not inside a class sub-folder (label.from: folder)")
            continue
        kept.append(path)
        labels.append(parts[0])
    return kept, labels, []


# ---- sources -------------------------------------------------------------------------


def _audio(data: PredictData, pipeline: dict[str, Any], policy: ErrorPolicy) -> Items:
    root = _root(data)
    recorded = pipeline["audio"]
    params = SpectrogramParams(**{key: recorded[key] for key in AUDIO_KEYS})
    files, labels, notes = labelled_files(
        root, AUDIO_SUFFIXES, data.label, pipeline["label"], policy
    )
    x, done = spectrograms(files, params, _spectrogram_cache(data), data.audio.workers, policy)
    kept = np.flatnonzero(done)
    return Items(
        x=scaled(x[done], recorded["scale"]),
        names=[_relative(files[i], root).as_posix() for i in kept],
        labels=None if labels is None else [labels[i] for i in kept],
        origin=str(root),
        notes=notes,
    )


def _spectrogram_cache(data: PredictData) -> Path | None:
    if not data.audio.cache:
        return None
    if data.audio.cache_dir is None:
        return cache_dir("spectrograms")
    folder = Path(data.audio.cache_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _imagefolder(data: PredictData, pipeline: dict[str, Any], policy: ErrorPolicy) -> Items:
    root = _root(data)
    if data.label is not None and data.label.from_ == "pattern":
        raise UserError("data.label: a pattern labels audio files; images: folder or none")
    files, labels, notes = labelled_files(root, IMAGE_SUFFIXES, data.label, None, policy)
    channels, height, width = pipeline["input_shape"]
    color = data.color or COLORS.get(channels)
    if color is None:
        raise UserError(
            f"{root}: the model takes {channels}-channel input; image files give 1 (gray) "
            "or 3 (rgb) channels"
        )
    resize = data.image_size is not None or bool((pipeline.get("image") or {}).get("resize"))
    arrays, kept = [], []
    for i, path in enumerate(files):
        array = _image(path, color, (height, width), resize, policy)
        if array is not None:
            arrays.append(array)
            kept.append(i)
    x = np.stack(arrays) if arrays else np.zeros((0, channels, height, width), np.float32)
    return Items(
        x=x,
        names=[_relative(files[i], root).as_posix() for i in kept],
        labels=None if labels is None else [labels[i] for i in kept],
        origin=str(root),
        notes=notes,
    )


def _image(
    path: Path, color: str, size: tuple[int, int], resize: bool, policy: ErrorPolicy
) -> np.ndarray | None:
    try:
        with Image.open(path) as image:
            found = (image.height, image.width)
            if found != size and not resize:
                raise UserError(
                    f"{path}: {found[0]}x{found[1]} (HxW), the model takes {size[0]}x{size[1]}; "
                    f"set data.image_size: [{size[0]}, {size[1]}] to resize"
                )
            return to_array(image, color=color, size=size)
    except UserError:
        raise
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ...)
        policy.bad_file(path, f"unreadable image ({err})")
        return None


def _npz(data: PredictData, pipeline: dict[str, Any], policy: ErrorPolicy) -> Items:
    path = _root(data)
    if not path.is_file():
        raise UserError(f"data.path: {str(path)!r} is not a file (source npz)")
    labels: list[str] | None = None
    if _has_y(path) and not (data.label is not None and data.label.from_ == "none"):
        x, y = read_npz(path, data.layout)
        labels = y.tolist()
    else:
        with np.load(path, allow_pickle=False) as archive:
            x = _images(archive["x"], data.layout, path)
    names = [f"{path.name}[{i}]" for i in range(len(x))]
    return Items(x=x, names=names, labels=labels, origin=str(path))


def _has_y(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as archive:
            files = archive.files
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, AttributeError, TypeError) as err:
        raise UserError(f"{path}: not a readable .npz file ({err})") from None
    if "x" not in files:
        raise UserError(f"{path}: no array 'x' (found: {', '.join(files) or 'none'})")
    return "y" in files


def _idx(data: PredictData, pipeline: dict[str, Any], policy: ErrorPolicy) -> Items:
    root = _root(data)
    loaded = load_idx(DataConfig(source="idx", path=str(root)))
    parts = [loaded.data] + ([loaded.test] if loaded.test is not None else [])
    prefixes = ["train", "t10k"] if loaded.test is not None else [_idx_prefix(root)]
    names = [f"{p}[{i}]" for p, part in zip(prefixes, parts) for i in range(len(part))]
    labels = [loaded.classes[i] for part in parts for i in part.labels.tolist()]
    x = np.concatenate([part.inputs() for part in parts])
    unlabelled = data.label is not None and data.label.from_ == "none"
    return Items(x=x, names=names, labels=None if unlabelled else labels, origin=str(root))


def _idx_prefix(root: Path) -> str:
    return "train" if any(root.glob("train-images*")) else "t10k"


def _digits(data: PredictData, pipeline: dict[str, Any], policy: ErrorPolicy) -> Items:
    loaded = load_digits_source(DataConfig())
    labels = [loaded.classes[i] for i in loaded.data.labels.tolist()]
    names = [f"digits[{i}]" for i in range(len(labels))]
    unlabelled = data.label is not None and data.label.from_ == "none"
    return Items(loaded.data.inputs(), names, None if unlabelled else labels, loaded.origin)


READERS = {
    "audio": _audio,
    "imagefolder": _imagefolder,
    "npz": _npz,
    "idx": _idx,
    "digits": _digits,
}
