"""The input pipeline an exported model records, and the data section `predict` reads.

`evotune export` writes the pipeline of the run's data into the model file (the
`pipeline` entry of its header, also in the JSON beside it), so that the file alone
says how new files become the tensors the model takes:

```json
{"version": 1, "kind": "audio", "source": "audio", "input_shape": [1, 64, 32],
 "classes": ["0", "1", ..., "9"],
 "audio": {"sample_rate": 8000, "trim_db": 60.0, "duration": 1.0, "pad": "zeros",
           "n_mels": 64, "n_fft": 512, "hop_length": 256, "scale": "unit"},
 "label": {"from": "pattern", "pattern": "{label}_{speaker}_{index}.wav"},
 "image": null, "input_map": null}
```

`kind: image` has `image: {"color": "gray"|"rgb"|null, "size": [H, W], "resize": bool}`
instead (resize: the run resized its images to `size`, so `predict` resizes too).
Every image source gives values in [0, 1] (8-bit / 255, 16-bit / 65535, digits / 16,
npz floats as stored). `input_map` is prune's `task.input_range` map
(x' = (x - subtract) * multiply + add). Channel mapping, resizing and normalisation
are part of the network (its input adapter) and of its own spec (`model`).

`PredictData` is the data section `predict` reads: where the new data is and how it is
labelled. What shapes the input comes from the model; setting a pipeline key to
another value than the model's is an error naming both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from evotune.data.config import DataConfig, SplitConfig
from evotune.data.pattern import compile_pattern
from evotune.errors import UserError
from evotune.sections import Section

VERSION = 1
AUDIO_KEYS = ("sample_rate", "trim_db", "duration", "pad", "n_mels", "n_fft", "hop_length")
COLORS = {1: "gray", 3: "rgb"}


def record_pipeline(
    config: DataConfig,
    classes: list[str],
    input_shape: tuple[int, ...] | list[int],
    input_map: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The pipeline of a run's `data:` section, as plain JSON values."""
    channels, height, width = (int(n) for n in input_shape)
    audio = config.source == "audio"
    recorded: dict[str, Any] = {
        "version": VERSION,
        "kind": "audio" if audio else "image",
        "source": config.source,
        "input_shape": [channels, height, width],
        "classes": [str(name) for name in classes],
        "audio": None,
        "label": None,
        "image": None,
        "input_map": input_map,
    }
    if audio:
        recorded["audio"] = {key: getattr(config.audio, key) for key in AUDIO_KEYS}
        recorded["audio"]["scale"] = config.audio.scale
        recorded["label"] = config.label.model_dump(mode="json", by_alias=True)
    else:
        recorded["image"] = {
            "color": COLORS.get(channels),
            "size": [height, width],
            "resize": config.image_size is not None,
        }
    return recorded


def describe_pipeline(pipeline: dict[str, Any]) -> str:
    """One line for people: what the model takes."""
    shape = "x".join(str(n) for n in pipeline["input_shape"])
    classes = pipeline["classes"]
    shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
    if pipeline["kind"] == "audio":
        a = pipeline["audio"]
        what = (
            f"audio -> log-mel {shape} ({a['sample_rate']} Hz, {a['duration']} s, "
            f"{a['n_mels']} mels, hop {a['hop_length']}, scale {a['scale']})"
        )
    else:
        what = f"{pipeline['source']} images {shape}"
    return f"{what}; {len(classes)} classes: {shown}"


# ---- the data section of `evotune predict` ----------------------------------------


class PredictLabel(Section):
    """Labels of the new data: as in training (default), or `none`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    from_: Literal["folder", "pattern", "none"] | None = Field(
        None, alias="from", description="default: pattern when a pattern is given, else folder"
    )
    pattern: str | None = None

    @model_validator(mode="after")
    def _mode(self) -> PredictLabel:
        if self.from_ is None:
            self.from_ = "pattern" if self.pattern else "folder"
        if self.from_ == "pattern":
            if self.pattern is None:
                raise ValueError("from: pattern needs a pattern, e.g. '{label}_{speaker}.wav'")
            if "label" not in compile_pattern(self.pattern).fields:
                raise ValueError(f"pattern {self.pattern!r} needs a {{label}} field")
        return self


class PredictAudio(Section):
    """The pipeline keys may be given only with the model's values (a training config's
    section reads unchanged); cache and workers are this machine's business."""

    sample_rate: int | None = None
    trim_db: float | None = None
    duration: float | None = None
    pad: str | None = None
    n_mels: int | None = None
    n_fft: int | None = None
    hop_length: int | None = None
    scale: str | None = None
    cache: bool = Field(True, description="keep spectrograms on disk for the next time")
    cache_dir: str | None = None
    workers: int | None = Field(None, ge=1)


class PredictData(Section):
    """DATA.yaml of `evotune predict`: a `data:` section (or a file holding one)."""

    source: Literal["idx", "imagefolder", "npz", "digits", "audio"] | None = Field(
        None, description="default: audio for an audio model, else from the path"
    )
    path: str | None = Field(None, description="folder or file of the new data")
    label: PredictLabel | None = Field(None, description="default: as the model's training")
    layout: Literal["auto", "nchw", "nhwc"] = "auto"
    color: Literal["gray", "rgb"] | None = None
    image_size: tuple[int, int] | None = Field(None, description="resize to the model's [H, W]")
    audio: PredictAudio = PredictAudio()
    on_error: Literal["raise", "skip"] = "raise"

    @field_validator("label", mode="before")
    @classmethod
    def _label_word(cls, value: Any) -> Any:
        return {"from": value} if isinstance(value, str) else value


def data_section(raw: Any, where: str) -> dict[str, Any]:
    """The data section of a DATA.yaml: the file itself, or its `data:` entry (a whole
    run config may be given: its other sections are not read)."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a data section (a mapping), got {type(raw).__name__}")
    if isinstance(raw.get("data"), dict):
        return raw["data"]
    return raw


# Keys of a training `data:` section that say how to read, not what: predict reads
# every example into memory whatever they say.
READING_KEYS = {"in_memory", "memory_gb", "stream_workers"}


def training_only(section: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(keys of `section` that only a training run reads, those of them set to anything
    but their default). A run's config.yaml lists every key with its default: fine;
    a split or a class subset would be silently ignored, so predict refuses it."""
    keys = [
        k for k in section if k in DataConfig.model_fields and k not in PredictData.model_fields
    ]
    return keys, [k for k in keys if k not in READING_KEYS and not _default(k, section[k])]


def _default(key: str, value: Any) -> bool:
    if key == "split":
        try:
            return value is None or SplitConfig.model_validate(value) == SplitConfig()
        except ValueError:  # pydantic's ValidationError: not a valid split, so not default
            return False
    return value == DataConfig.model_fields[key].default


def check_against(data: PredictData, pipeline: dict[str, Any]) -> str:
    """The source to read (checked against the model's kind); UserError naming any
    pipeline key set to another value than the model's."""
    if pipeline["kind"] == "audio":
        source = data.source or "audio"
        if source != "audio":
            raise UserError(
                f"data.source: the model takes audio ({describe_pipeline(pipeline)}), "
                f"got source {source!r}"
            )
        _same_audio(data.audio, pipeline["audio"])
        return source
    if data.source == "audio":
        raise UserError(
            f"data.source: the model takes images ({describe_pipeline(pipeline)}), "
            "got source 'audio'"
        )
    _same_image(data, pipeline)
    return data.source or guess_source(data.path, pipeline)


def _same_audio(given: PredictAudio, recorded: dict[str, Any]) -> None:
    for key in sorted(given.model_fields_set & {*AUDIO_KEYS, "scale"}):
        value = getattr(given, key)
        if value != recorded[key]:
            raise UserError(
                f"data.audio.{key}: the model was trained on {key} {recorded[key]!r}, got "
                f"{value!r}; predict applies the model's pipeline: drop the key"
            )


def _same_image(data: PredictData, pipeline: dict[str, Any]) -> None:
    channels, height, width = pipeline["input_shape"]
    if data.color is not None and data.color != COLORS.get(channels):
        raise UserError(
            f"data.color: the model takes {channels}-channel input, got color {data.color!r} "
            f"({'1' if data.color == 'gray' else '3'} channels)"
        )
    if data.image_size is not None and tuple(data.image_size) != (height, width):
        size = "x".join(map(str, data.image_size))
        raise UserError(
            f"data.image_size: the model takes {height}x{width} (HxW) inputs, got {size}; "
            f"use image_size: [{height}, {width}] (or leave it out)"
        )


def guess_source(path: str | None, pipeline: dict[str, Any]) -> str:
    """An image model's source from its path: .npz file, IDX folder, image folder."""
    if path is None:
        if pipeline["source"] == "digits":
            return "digits"
        raise UserError("data.path: required (a folder of images, an .npz file or IDX files)")
    target = Path(path).expanduser()
    if target.suffix.lower() == ".npz":
        return "npz"
    if target.is_dir() and any(target.glob("*-idx3-ubyte*")):
        return "idx"
    return "imagefolder"
