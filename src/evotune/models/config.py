"""The `model:` config section: which backbone, which weights, how to cut and adapt it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from evotune.errors import did_you_mean
from evotune.models.kinds import KINDS, usages
from evotune.sections import Section

WEIGHT_SUFFIXES = (".pth", ".pt", ".th", ".bin", ".safetensors")


class ModelConfig(Section):
    backbone: str = Field(
        "builtin:small_cnn",
        description="torchvision:<name> | timm:<name> | builtin:<name> | file:<checkpoint> "
        "| python:<module or file.py>:<factory>",
    )
    weights: str = Field(
        "none",
        description="none | DEFAULT | a torchvision weights name (IMAGENET1K_V2, "
        "ResNet50_Weights.IMAGENET1K_V2) | a local .pth/.pt/.th/.safetensors file",
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="python: keyword arguments of the factory"
    )
    classifier: str | None = Field(
        None,
        description="python: the module to remove (e.g. fc or head.fc); null: the last "
        "nn.Linear the forward pass calls",
    )
    strict: bool = Field(
        True, description="python: missing or unexpected keys in model.weights are errors"
    )
    granularity: Literal["leaf", "block", "stage"] = Field(
        "block", description="genes: every layer with weights | repeated blocks | stages"
    )
    channels: Literal["adapt", "repeat", "keep"] = Field(
        "adapt", description="learned 1x1 conv to 3 channels | tile gray | pass through"
    )
    resize: tuple[int, int] | None = Field(
        None, description="[H, W] (bilinear); null: upsample sides below the backbone's minimum"
    )
    normalize: Literal["imagenet", "none"] = Field(
        "imagenet", description="ImageNet mean/std after the channel mapping"
    )
    head_hidden: int | None = Field(None, ge=1, description="hidden ReLU layer in the head")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before each head layer")
    truncate: int | None = Field(None, ge=1, description="keep only the first K blocks")
    se_blocks: bool = Field(False, description="squeeze-and-excitation after each stage")
    batchnorm: Literal["frozen_eval", "eval", "train"] = Field(
        "frozen_eval",
        description="backbone batch-norm: inference mode in frozen genes | in every gene "
        "(affine weights still train; the first seed's) | trains in every gene",
    )

    @field_validator("backbone")
    @classmethod
    def _backbone_kind(cls, value: str) -> str:
        kind, sep, name = value.partition(":")
        if not sep or kind not in KINDS or not name:
            hint = did_you_mean(kind, KINDS) if sep and kind not in KINDS else ""
            raise ValueError(f"expected one of {usages()}, got {value!r}{hint}")
        KINDS[kind].check_name(name)
        return value

    @field_validator("args", "classifier", "strict")
    @classmethod
    def _kind_option(cls, value: Any, info: ValidationInfo) -> Any:
        """args, classifier and strict: false mean something only to the kinds that
        take them (python:); elsewhere they would be silently ignored."""
        default = cls.model_fields[str(info.field_name)].get_default(call_default_factory=True)
        kind = KINDS.get(str(info.data.get("backbone", "")).partition(":")[0])
        if value != default and kind is not None and info.field_name not in kind.options:
            takers = [k.usage for k in KINDS.values() if info.field_name in k.options]
            raise ValueError(
                f"only {' or '.join(takers)} backbones take it; "
                f"backbone is {info.data['backbone']!r}"
            )
        return value

    @field_validator("resize")
    @classmethod
    def _positive(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"expected [height, width] of positive sizes, got {list(value)}")
        return value

    @property
    def kind(self) -> str:
        return self.backbone.partition(":")[0]

    @property
    def name(self) -> str:
        return self.backbone.partition(":")[2]
