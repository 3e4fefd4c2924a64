"""The `file:` backbone format: one .safetensors file holding every weight of a
TransferNet (adapter and head included) and, in its header, a JSON spec of the
architecture (the model config, input shape, classes) plus free-form `meta`.

Loading rebuilds the architecture from the spec with no weights, then loads the
tensors strictly: nothing is unpickled, and a file that does not match is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from evotune.engine.state import atomic_write_json, default_file_mode
from evotune.errors import UserError
from evotune.models.assemble import assemble
from evotune.models.config import ModelConfig
from evotune.models.kinds import BackboneKind, get_kind, register_kind
from evotune.models.net import TransferNet

FORMAT = "evotune-model"
VERSION = 1


def save_checkpoint(net: TransferNet, path: Path, meta: dict[str, Any]) -> None:
    """Write `net` to `path` atomically (a temp file, then os.replace)."""
    path = Path(path)
    spec = {
        "format": FORMAT,
        "version": VERSION,
        "model": portable_config(net.config).model_dump(mode="json"),
        "weights_source": net.config.weights,
        "input_shape": list(net.input_shape),
        "num_classes": _num_classes(net),
        "meta": meta,
    }
    write_safetensors(net, path, {FORMAT: json.dumps(spec)})


def portable_config(config: ModelConfig) -> ModelConfig:
    """The config a checkpoint records: no weights (it holds them), and the backbone as
    its kind writes it for use elsewhere (python: a module file's absolute path)."""
    backbone = get_kind(config.kind).portable(config.backbone)
    return config.model_copy(update={"weights": "none", "backbone": backbone})


def export_model(net: TransferNet, path: Path, meta: dict[str, Any]) -> None:
    """`save_checkpoint` plus `<path>.json`: the model's description and `meta`, for
    people and tools that do not read safetensors (what `evotune export` writes)."""
    save_checkpoint(net, path, meta=meta)
    atomic_write_json(path.with_suffix(".json"), {"model": net.describe(), **meta})


def write_safetensors(net: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Every tensor of `net` and string `metadata` to `path`, atomically (a temp file in
    the same folder, then os.replace)."""
    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        # force_contiguous: a GPU-trained net is channels_last (train/device.py: place)
        save_model(net, str(tmp), metadata=metadata, force_contiguous=True)
        os.chmod(tmp, default_file_mode())  # safetensors writes 0600: others could not read
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _num_classes(net: TransferNet) -> int:
    return [m for m in net.head.modules() if isinstance(m, nn.Linear)][-1].out_features


def read_spec(path: Path) -> dict[str, Any]:
    """The JSON spec in a checkpoint's header; UserError if it is not one of ours."""
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise UserError(f"model.backbone: checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"model.backbone: {path} is not a safetensors file ({err})") from None
    if FORMAT not in header:
        raise UserError(
            f"model.backbone: {path} is not an evotune checkpoint (written by `evotune pretrain` "
            "or save_checkpoint); plain weight files go in model.weights"
        )
    spec = json.loads(header[FORMAT])
    if spec.get("version", 0) > VERSION:
        raise UserError(
            f"model.backbone: {path} was written by a newer evotune (format {spec['version']})"
        )
    return spec


def load_checkpoint(path: Path) -> tuple[TransferNet, dict[str, Any]]:
    """Rebuild the saved net exactly (weights, batch-norm statistics) and its meta."""
    from safetensors.torch import load_model

    spec = read_spec(Path(path))
    config = ModelConfig.model_validate(spec["model"])
    net = assemble(config, tuple(spec["input_shape"]), int(spec["num_classes"]))
    try:
        load_model(net, str(path), strict=True)
    except RuntimeError as err:
        raise UserError(f"model.backbone: {path} does not match its own spec: {err}") from None
    return net, spec.get("meta", {})


def build_from_checkpoint(
    config: ModelConfig, input_shape: tuple[int, int, int], num_classes: int
) -> TransferNet:
    """`backbone: file:PATH`: the checkpoint's backbone (and adapter, when its shape
    still fits) with this config's head, adapter settings, granularity and surgery.

    Truncation may only cut deeper than the checkpoint; SE blocks it has are kept.
    The head is reused only when the classes and head settings are unchanged.
    """
    if config.weights != "none":
        raise UserError("model.weights: a file: backbone brings its own weights; use weights: none")
    path = Path(config.name)
    source, meta = load_checkpoint(path)
    base: ModelConfig = source.config
    keep = config.truncate if config.truncate is not None else base.truncate
    if base.truncate is not None and keep is not None and keep > base.truncate:
        raise UserError(f"model.truncate: {path} keeps only {base.truncate} blocks; got {keep}")
    merged = config.model_copy(
        update={
            "backbone": base.backbone,
            "args": base.args,  # python: the factory's arguments and classifier
            "classifier": base.classifier,
            "truncate": keep,
            "se_blocks": base.se_blocks or config.se_blocks,
        }
    )
    net = assemble(merged, input_shape, num_classes)
    fresh = _transplant(source, net)
    net.source = {"checkpoint": str(path), "meta": meta, "fresh": fresh}
    return net


def _transplant(source: TransferNet, target: TransferNet) -> list[str]:
    """Copy every part whose name and shapes match; returns the parts left fresh."""
    fresh = []
    index = {name: i for i, name in enumerate(source.stage_names)}
    for i, name in enumerate(target.stage_names):
        src = source.stages[index[name]] if name in index else None
        if not _copy(src, target.stages[i]):
            if target.stage_kinds[i] != "new":
                raise UserError(f"model.backbone: checkpoint stage {name!r} does not fit")
            fresh.append(name)
    for part in ("adapter", "head"):
        if not _copy(getattr(source, part), getattr(target, part)):
            fresh.append(part)
    return fresh


def _copy(src: nn.Module | None, dst: nn.Module) -> bool:
    if src is None:
        return False
    have, want = src.state_dict(), dst.state_dict()
    if have.keys() != want.keys() or any(have[k].shape != want[k].shape for k in want):
        return False
    dst.load_state_dict(have)
    return True


register_kind(
    BackboneKind(
        "file",
        "file:<checkpoint>",
        build=build_from_checkpoint,
        preview=lambda name: load_checkpoint(Path(name))[0],
    )
)
