"""`evotune pretrain CONFIG`: train a backbone on a source dataset and save it as a
`file:` checkpoint (architecture + weights), the way examples, benchmarks and the demo
get a genuinely pretrained backbone when no model hub is reachable.

    data: {source: idx, path: ../shared/data/mnist-t10k, split: {test_fraction: 0.1}}
    model: {backbone: "builtin:small_cnn", channels: keep, normalize: none}
    pretrain: {epochs: 5, lr: 0.001, batch_size: 128, out: pretrained/small_cnn-mnist.safetensors}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from evotune.config import apply_overrides, load_yaml, validate_section
from evotune.data import DataConfig, load_data
from evotune.data.pipeline import record_pipeline
from evotune.models import ModelConfig, build_model, save_checkpoint
from evotune.sections import Section
from evotune.train.device import (
    PRECISION_HELP,
    Precision,
    check_precision,
    place,
    resolve_device,
)
from evotune.train.finetune import TrainSettings, eval_batch_size, evaluate, fit


class PretrainSettings(Section):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    patience: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    precision: Precision = Field("fp32", description=PRECISION_HELP)
    out: str = Field("pretrained/backbone.safetensors", description="checkpoint to write")


class PretrainConfig(Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainSettings = PretrainSettings()


def load_pretrain_config(path: Path, overrides: list[str] | None = None) -> PretrainConfig:
    return validate_section(PretrainConfig, apply_overrides(load_yaml(path), overrides or []), "")


def pretrain(config: PretrainConfig, out: Path | None = None) -> dict[str, Any]:
    """Train every weight of the model on the source data; write the checkpoint;
    return what was measured."""
    settings = config.pretrain
    device = resolve_device(settings.device, "pretrain.device")
    check_precision(settings.precision, device, "pretrain.precision")
    data = load_data(config.data, streaming=True)
    torch.manual_seed(settings.seed)
    net = build_model(config.model, data.input_shape, data.num_classes, seed=settings.seed)
    net = place(net, device)
    net.set_trainable([True] * len(net.genes))
    splits = {name: split.to(device) for name, split in data.splits().items()}
    eval_batch = eval_batch_size(data.input_shape)
    train_settings = TrainSettings(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        optimizer=settings.optimizer,
        patience=settings.patience,
        restore_best=True,
        eval_batch_size=eval_batch,
        precision=settings.precision,
    )
    result = fit(
        net,
        net.trainable_parameters(),
        splits["train"],
        splits["val"],
        train_settings,
        settings.seed,
    )
    measured = {
        "val_accuracy": result.best_val_accuracy,
        "epochs": result.epochs_run,
        "classes": data.classes,
        "data": config.data.model_dump(mode="json"),
    }
    if "test" in splits:
        measured["test_accuracy"] = evaluate(net, splits["test"], eval_batch, settings.precision)[1]
    path = Path(out or settings.out)
    pipeline = record_pipeline(config.data, data.classes, data.input_shape)
    save_checkpoint(net.cpu(), path, meta={"pretrain": measured, "pipeline": pipeline})
    return {**measured, "path": str(path), "seconds": round(result.seconds, 2)}
