"""Every kind of model file `evotune export` writes, loaded back as one `nn.Module`
(in eval mode, on the CPU) with the input pipeline it recorded.

| header entry      | written by                                | forward(x) gives          |
|-------------------|-------------------------------------------|---------------------------|
| `evotune-model`   | `layers` and `hparams` export, `pretrain` | logits (a TransferNet)    |
| `evotune-pruned`  | `prune` export                            | logits (pruned head)      |
| `evotune-weights` | `weights` export                          | logits (module kind), or  |
|                   |                                           | SVM vote shares (autoencoder) |

The pipeline (data/pipeline.py) sits in the header: in the spec's `meta` for the first
two, in the spec itself for `weights`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from evotune.data.pipeline import VERSION
from evotune.errors import UserError
from evotune.infer import load_weights_model
from evotune.models.checkpoint import FORMAT as CHECKPOINT
from evotune.models.checkpoint import load_checkpoint
from evotune.prune.export import FORMAT as PRUNED
from evotune.prune.export import load_pruned
from evotune.tasks.weights_base import FORMAT as WEIGHTS
from evotune.tasks.weights_base import read_model

KINDS = {CHECKPOINT: "file: checkpoint", PRUNED: "pruned model", WEIGHTS: "weights model"}


@dataclass
class Exported:
    """A loaded export: the module, its recorded pipeline, what kind it is, its meta."""

    model: nn.Module
    pipeline: dict[str, Any]
    kind: str  # the header entry: evotune-model, evotune-pruned, evotune-weights
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.pipeline["classes"])


def load_exported(path: Path) -> Exported:
    """The model file at `path`; UserError when it is not an export with a pipeline."""
    path = Path(path)
    kind = export_kind(path)
    if kind == CHECKPOINT:
        model, meta = load_checkpoint(path)
        pipeline = meta.get("pipeline")
    elif kind == PRUNED:
        model, meta = load_pruned(path)
        pipeline = meta.get("pipeline")
    else:
        meta, tensors = read_model(path)
        model, pipeline = load_weights_model(meta, tensors), meta.get("pipeline")
    if pipeline is None:
        raise UserError(
            f"model: {path} does not record its input pipeline (how its data was read, its "
            "class names): it was written before evotune recorded them, or by `pretrain` "
            "before that. Export the run again: evotune export RUN_DIR --out FILE"
        )
    if pipeline.get("version", 0) > VERSION:
        raise UserError(
            f"model: {path} was written by a newer evotune (pipeline format "
            f"{pipeline['version']}); upgrade evotune"
        )
    return Exported(model.cpu().eval(), pipeline, kind, meta)


def export_kind(path: Path) -> str:
    """Which export a file is (its header entry); UserError naming the file otherwise."""
    from safetensors import SafetensorError, safe_open

    if not path.exists():
        raise UserError(f"model: {path} not found; expected a file written by `evotune export`")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(
            f"model: {path} is not a model written by `evotune export` (not a safetensors "
            f"file: {err})"
        ) from None
    for kind in KINDS:
        if kind in header:
            return kind
    raise UserError(
        f"model: {path} is a safetensors file but not a model written by `evotune export` "
        f"(its header has none of {', '.join(KINDS)})"
    )
