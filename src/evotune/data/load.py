"""`load_data`: source -> class subset -> test split -> validation split -> few-shot cap."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from evotune.data.audio import load_audio
from evotune.data.config import DataConfig
from evotune.data.dataset import Dataset, Split
from evotune.data.digits import load_digits_source
from evotune.data.idx import load_idx
from evotune.data.imagefolder import load_imagefolder
from evotune.data.npz import load_npz
from evotune.data.raw import Examples, Loaded
from evotune.data.splits import cap_per_class, holdout, where
from evotune.data.stream import FileInputs, StreamedSplit, decoded_bytes
from evotune.errors import UserError, did_you_mean

SOURCES: dict[str, Callable[[DataConfig], Loaded]] = {
    "idx": load_idx,
    "imagefolder": load_imagefolder,
    "npz": load_npz,
    "digits": load_digits_source,
    "audio": load_audio,
}
_TEST, _VAL, _CAP = 0, 1, 2  # stages: each draws its own seed from split.seed


def load_data(config: DataConfig, streaming: bool = False) -> Dataset:
    """Load, subset and split the data a `data:` section describes (on the CPU).

    `streaming`: the caller trains from `Batches` and can take a `StreamedSplit`, which
    a source hands over when `data.in_memory` keeps its examples on disk; otherwise
    they are decoded into memory here (or refused when `in_memory` is false)."""
    loaded = SOURCES[config.source](config)
    if config.classes is not None:
        select_classes(loaded, config.classes)
    _check_two_classes(loaded)
    pool, test = _test_split(loaded, config)
    train, val = _validation_split(pool, loaded, config)
    if config.max_per_class is not None:
        train = train.take(cap_per_class(train.labels, config.max_per_class, _seed(config, _CAP)))
    parts = {"train": train, "val": val} | ({} if test is None else {"test": test})
    notes = loaded.notes + _where_inputs_live(parts, config, streaming)
    splits = {
        name: to_split(part, config.split.group_by, streaming, config.stream_workers)
        for name, part in parts.items()
    }
    return Dataset(
        train=splits["train"],
        val=splits["val"],
        test=splits.get("test"),
        classes=loaded.classes,
        input_shape=train.input_shape,
        notes=notes,
    )


def _where_inputs_live(
    parts: dict[str, Examples], config: DataConfig, streaming: bool
) -> list[str]:
    """A note when the examples stream from disk or, too large for data.memory_gb,
    are decoded into memory all the same; an error when in_memory: false cannot hold."""
    lazy = [p for p in parts.values() if isinstance(p.x, FileInputs)]
    if not lazy:
        return []
    n = sum(len(p) for p in lazy)
    size = f"{decoded_bytes(n, lazy[0].input_shape) / 2**30:.1f} GB decoded"
    if streaming:
        why = "data.in_memory: false" if config.in_memory is False else "above data.memory_gb"
        return [f"streaming {n} examples from disk ({size}; {why})"]
    if config.in_memory is False:
        raise UserError(
            "data.in_memory: false, but this command needs its data in memory (only the "
            "layers and hparams tasks and pretrain stream it); use in_memory: auto or true"
        )
    return [f"decoding {n} examples into memory ({size}, above data.memory_gb)"]


def _check_two_classes(loaded: Loaded) -> None:
    """Classification needs two classes: one would train a constant to 100 % accuracy."""
    present = np.unique(loaded.data.labels)
    if len(present) < 2:
        names = [loaded.classes[i] for i in present]
        raise UserError(
            f"data: {loaded.origin} holds {len(present)} class{'es' * (len(present) != 1)} "
            f"{names}; classification needs at least 2 (check data.path and data.classes)"
        )


def select_classes(loaded: Loaded, wanted: list[str | int]) -> None:
    """Keep only the `wanted` classes (names or labels), relabelled 0..k-1 in that order."""
    order = [_class_index(entry, loaded) for entry in wanted]
    if len(set(order)) != len(order):
        raise UserError(f"data.classes: a class is listed twice in {wanted}")
    new_label = np.full(len(loaded.classes), -1, dtype=np.int64)
    new_label[order] = np.arange(len(order))
    loaded.data = _relabel(loaded.data, new_label)
    if loaded.test is not None:
        loaded.test = _relabel(loaded.test, new_label)
        if len(loaded.test) == 0:
            loaded.notes.append(f"{loaded.test_origin} has none of data.classes: no test set")
            loaded.test = None
    loaded.classes = [loaded.classes[i] for i in order]


def _class_index(entry: str | int, loaded: Loaded) -> int:
    # Names first: for digits "3" is both the name and the label of class 3. An int is
    # a label only when the names are not numbers (npz y = [3, 7, 11]: 0 is no class).
    if str(entry) in loaded.classes:
        return loaded.classes.index(str(entry))
    numeric = all(name.lstrip("-").isdigit() for name in loaded.classes)
    if isinstance(entry, int) and not numeric and 0 <= entry < len(loaded.classes):
        return entry
    raise UserError(
        f"data.classes: unknown class {entry!r} in {loaded.origin}"
        f"{did_you_mean(str(entry), loaded.classes)}; classes: {', '.join(loaded.classes)}"
    )


def _relabel(examples: Examples, new_label: np.ndarray) -> Examples:
    kept = examples.take(new_label[examples.labels] >= 0)
    kept.labels = new_label[kept.labels]
    return kept


def _test_split(loaded: Loaded, config: DataConfig) -> tuple[Examples, Examples | None]:
    split, data = config.split, loaded.data
    if loaded.test is not None:
        if split.test_fraction is not None or split.test_where is not None:
            raise UserError(
                f"data.split: {loaded.origin} already has a test set ({loaded.test_origin}); "
                "drop split.test_fraction / split.test_where"
            )
        return data, loaded.test
    if split.test_where is not None:
        mask = where(data, split.test_where, loaded.origin)
        return data.take(~mask), data.take(mask)
    if split.test_fraction is not None:
        kept, held = holdout(
            data.labels,
            fraction=split.test_fraction,
            seed=_seed(config, _TEST),
            classes=loaded.classes,
            what="test",
            origin=loaded.origin,
            groups=_groups(data, split.group_by),
        )
        return data.take(kept), data.take(held)
    return data, None


def _validation_split(
    pool: Examples, loaded: Loaded, config: DataConfig
) -> tuple[Examples, Examples]:
    # Always from the training pool: the validation set is never the test set.
    kept, held = holdout(
        pool.labels,
        fraction=config.split.val_fraction,
        seed=_seed(config, _VAL),
        classes=loaded.classes,
        what="validation",
        origin=loaded.origin,
        groups=_groups(pool, config.split.group_by),
    )
    return pool.take(kept), pool.take(held)


def _groups(examples: Examples, group_by: str | None) -> np.ndarray | None:
    return None if group_by is None else examples.fields[group_by]


def _seed(config: DataConfig, stage: int) -> int:
    return int(np.random.SeedSequence([config.split.seed, stage]).generate_state(1)[0])


def to_split(
    examples: Examples,
    group_by: str | None,
    streaming: bool = False,
    workers: int | None = None,
) -> Split | StreamedSplit:
    """Examples as CPU tensors (float32 x, int64 y), sharing memory with the arrays; or,
    for examples on disk and a caller that can stream them, a `StreamedSplit`."""
    inputs = examples.inputs()
    y = torch.from_numpy(np.ascontiguousarray(examples.labels, dtype=np.int64))
    groups = None if group_by is None else examples.fields[group_by].tolist()
    if isinstance(inputs, FileInputs):
        if streaming:
            return StreamedSplit(inputs, y, groups, workers)
        inputs = inputs.decode_all()
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
    return Split(x=x, y=y, groups=groups)
