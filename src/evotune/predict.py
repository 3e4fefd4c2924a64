"""`evotune predict MODEL DATA.yaml`: an exported model applied to new data.

MODEL is a file written by `evotune export` (any task), or a run directory, whose best
is then exported on the fly into a temporary file (retrained exactly as `evotune
export` does; nothing in the run directory is written). The model file records its
input pipeline (data/pipeline.py), so the new data goes through exactly the steps the
training data went through; DATA.yaml only says where the data is and how it is
labelled (a `data:` section, or a file holding one, e.g. a run's own config).

    result = predict("best.safetensors", {"path": "new-speaker"}, out=Path("p.csv"))
    result.metrics["accuracy"], result.rows[0]  # {"item", "predicted", "probability", "label"}
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evotune.config import apply_overrides, load_yaml, validate_section
from evotune.data.items import Items, read_items
from evotune.data.pipeline import PredictData, data_section, describe_pipeline, training_only
from evotune.engine.state import atomic_write_json, atomic_write_text
from evotune.errors import UserError
from evotune.export import export
from evotune.exported import KINDS, Exported, load_exported
from evotune.rundir import check_out_file
from evotune.train.device import place, resolve_device

BATCH = 256  # examples per forward pass


@dataclass
class PredictionResult:
    """What `predict` found: one row per item, and metrics when the data has labels."""

    rows: list[dict[str, Any]]  # item, predicted (class name), probability, label (or None)
    metrics: dict[str, Any] | None  # accuracy, per_class, confusion, classes, ...; None: no labels
    classes: list[str] = field(default_factory=list)  # the model's, in output order
    model: str = ""  # what was loaded, for people
    notes: list[str] = field(default_factory=list)
    csv: Path | None = None  # the files written (out)
    metrics_json: Path | None = None


def load_model(path: str | os.PathLike[str]) -> nn.Module:
    """The model an export file (or a run directory's best) holds, in eval mode."""
    with exported_model(Path(path), notes=[]) as exported:
        return exported.model


def predict(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str] | Mapping[str, Any],
    *,
    overrides: Sequence[str] = (),
    out: Path | None = None,
    overwrite: bool = False,
    device: str | None = None,
) -> PredictionResult:
    """Apply `model` (an export file or a run directory) to `data` (a DATA.yaml path or
    a dict shaped like a `data:` section). With `out`, write the CSV there and, when the
    data has labels, the metrics beside it (`<out stem>.metrics.json`); existing files
    are refused unless `overwrite`. Raises UserError on bad input (the message names the
    key or file: classes, channels or shapes that differ from the model's). `device`:
    auto (CUDA when there is one; the default), cpu, cuda or cuda:N; a run directory's
    best is also retrained there (default: on the run's fitness.device)."""
    where = resolve_device(device or "auto", "--device")
    section = read_data(data, list(overrides))
    if section.path is not None and not Path(section.path).expanduser().exists():
        raise UserError(f"data.path: {section.path!r} does not exist")  # before any retraining
    files = _outputs(Path(out), overwrite) if out is not None else None
    notes: list[str] = []
    with exported_model(Path(model), notes, device) as exported:
        items = read_items(section, exported.pipeline)
        probabilities = class_probabilities(exported.model, items.x, where)
        described = f"{model} ({KINDS[exported.kind]}): {describe_pipeline(exported.pipeline)}"
    result = _result(items, probabilities, exported.classes)
    result.model, result.notes = described, notes + items.notes
    if files is not None:
        _write(result, *files)
    return result


@contextmanager
def exported_model(path: Path, notes: list[str], device: str | None = None) -> Iterator[Exported]:
    """The export at `path`, or a run directory's best exported into a temporary file."""
    if not path.is_dir():
        yield load_exported(path)
        return
    if not (path / "config.yaml").is_file():
        raise UserError(f"model: {path} is a folder but no run directory (no config.yaml)")
    with tempfile.TemporaryDirectory(prefix="evotune-predict-") as folder:
        export(path, Path(folder) / "best.safetensors", device=device)
        notes.append(
            f"{path}: its best was exported on the fly for this prediction only; "
            f"`evotune export {path} --out FILE` keeps it"
        )
        yield load_exported(Path(folder) / "best.safetensors")


def read_data(
    data: str | os.PathLike[str] | Mapping[str, Any], overrides: list[str]
) -> PredictData:
    """The data section of a DATA.yaml (or dict) with `--set` overrides (`path=...` or
    `data.path=...`), checked: training-only keys (split, classes, ...) are refused."""
    if isinstance(data, Mapping):
        raw, where = dict(data), "data"
    elif isinstance(data, str | os.PathLike):
        if not Path(data).is_file():
            raise UserError(f"data file {str(data)!r} not found; expected a YAML data section")
        raw, where = load_yaml(data), str(data)
    else:
        raise UserError(
            f"data: expected a YAML file or a dict shaped like a data: section, got "
            f"{data!r:.80} ({type(data).__name__})"
        )
    section = apply_overrides(data_section(raw, where), [_relative_key(o) for o in overrides])
    keys, changed = training_only(section)
    if changed:
        raise UserError(
            f"{', '.join('data.' + k for k in changed)}: predict applies the model to every "
            "example of data.path (no splits, no class subsets); drop "
            f"{'these keys' if len(changed) > 1 else 'the key'}"
        )
    return validate_section(
        PredictData, {k: v for k, v in section.items() if k not in keys}, "data"
    )


def _relative_key(override: str) -> str:
    return override.removeprefix("data.")


def class_probabilities(
    model: nn.Module, x: np.ndarray, device: torch.device | None = None
) -> np.ndarray:
    """(N, classes) float64: softmax of the logits (or the model's own probabilities),
    computed on `device` (None: CUDA when there is one)."""
    device = device or resolve_device("auto")
    model = place(model, device).eval()
    softmax = not getattr(model, "returns_probabilities", False)
    parts = []
    with torch.no_grad():
        for batch in torch.from_numpy(np.ascontiguousarray(x)).split(BATCH):
            scores = model(batch.to(device)).double()
            parts.append((torch.softmax(scores, dim=1) if softmax else scores).cpu())
    return torch.cat(parts).numpy()


def prediction_metrics(
    predicted: np.ndarray, labels: list[str], classes: list[str]
) -> dict[str, Any]:
    """Accuracy, per-class accuracy (None for a class without examples), the number of
    examples per class and the confusion matrix (rows: label, columns: predicted)."""
    index = {name: i for i, name in enumerate(classes)}
    truth = np.array([index[name] for name in labels], dtype=np.int64)
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (truth, np.asarray(predicted, dtype=np.int64)), 1)
    support = confusion.sum(axis=1)
    correct = int(np.trace(confusion))
    return {
        "accuracy": correct / len(truth),
        "examples": len(truth),
        "correct": correct,
        "per_class": {
            c: (float(confusion[i, i] / support[i]) if support[i] else None)
            for i, c in enumerate(classes)
        },
        "support": {c: int(support[i]) for i, c in enumerate(classes)},
        "confusion": confusion.tolist(),
        "classes": list(classes),
    }


def _result(items: Items, probabilities: np.ndarray, classes: list[str]) -> PredictionResult:
    predicted = probabilities.argmax(axis=1)
    labels = items.labels or [None] * len(items.names)
    rows = [
        {
            "item": name,
            "predicted": classes[p],
            "probability": float(probabilities[i, p]),
            "label": label,
        }
        for i, (name, p, label) in enumerate(zip(items.names, predicted.tolist(), labels))
    ]
    metrics = None if items.labels is None else prediction_metrics(predicted, items.labels, classes)
    return PredictionResult(rows=rows, metrics=metrics, classes=list(classes))


def _outputs(out: Path, overwrite: bool) -> tuple[Path, Path]:
    """The CSV and the metrics JSON beside it, checked before any work is done."""
    metrics = out.with_name(f"{out.stem}.metrics.json")
    for path in (out, metrics):
        check_out_file(path, overwrite)
    return out, metrics


def _write(result: PredictionResult, out: Path, metrics_path: Path) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["item", "predicted", "probability", "label"])
    for row in result.rows:
        label = "" if row["label"] is None else row["label"]
        writer.writerow([row["item"], row["predicted"], f"{row['probability']:.6f}", label])
    atomic_write_text(out, text.getvalue())
    result.csv = out
    if result.metrics is not None:
        atomic_write_json(metrics_path, {"model": result.model, **result.metrics})
        result.metrics_json = metrics_path


def summary_lines(result: PredictionResult) -> list[str]:
    """What the command line prints: the model, the files, accuracy, per class and the
    confusion matrix."""
    lines = [f"model: {result.model}", *(f"note: {n}" for n in result.notes)]
    where = f" -> {result.csv}" if result.csv else ""
    lines.append(f"{len(result.rows)} items predicted{where}")
    m = result.metrics
    if m is None:
        return lines + ["no labels: no accuracy (the CSV has the predictions)"]
    lines.append(f"accuracy {m['accuracy']:.4f} ({m['correct']}/{m['examples']})")
    present = [c for c in m["classes"] if m["support"][c]]
    lines.append(
        "per class: "
        + "  ".join(f"{c} {m['per_class'][c]:.3f} ({m['support'][c]})" for c in present)
    )
    width = max(5, *(len(c) + 1 for c in m["classes"]))
    lines.append("confusion (rows: label, columns: predicted):")
    lines.append(" " * width + "".join(f"{c:>{width}}" for c in m["classes"]))
    for c, row in zip(m["classes"], m["confusion"]):
        if m["support"][c]:
            lines.append(f"{c:>{width}}" + "".join(f"{v:>{width}}" for v in row))
    if result.metrics_json:
        lines.append(f"metrics -> {result.metrics_json}")
    return lines
