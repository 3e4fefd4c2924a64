"""The `data:` config section.

```yaml
data:
  source: audio              # idx | imagefolder | npz | digits (default) | audio
  path: ../shared/data/fsdd/recordings
  test_path: null            # imagefolder, npz, audio: a separate test folder/file
  label: {from: pattern, pattern: "{label}_{speaker}_{index}.wav"}
  audio: {sample_rate: 22050, trim_db: 60, duration: 4.0, pad: zeros, n_mels: 128}
  split: {val_fraction: 0.2, test_where: {index: [0, 1, 2, 3, 4]}, group_by: null, seed: 0}
  classes: null              # e.g. [0, 1, 2]: keep these, relabelled 0..k-1 in this order
  max_per_class: null        # few-shot: at most N training examples per class
  on_error: raise            # or skip: skip unreadable files and report how many
  in_memory: auto            # imagefolder, audio: true | false (stream from disk) | auto
  memory_gb: 4.0             # auto streams when the decoded examples would exceed this
  stream_workers: null       # processes reading examples when streaming (DataLoader)
```
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from evotune.data.pattern import compile_pattern
from evotune.errors import did_you_mean
from evotune.sections import Section

SOURCE_KEYS = {  # keys that only some sources read: setting them elsewhere is a mistake
    "test_path": ("imagefolder", "npz", "audio"),
    "color": ("imagefolder",),
    "image_size": ("imagefolder",),
    "layout": ("npz",),
    "label": ("audio",),
    "audio": ("audio",),
    "in_memory": ("imagefolder", "audio"),
    "memory_gb": ("imagefolder", "audio"),
    "stream_workers": ("imagefolder", "audio"),
}


class LabelConfig(Section):
    """Where an audio file's class comes from: its sub-folder or its file name."""

    # `from` is a Python keyword: the field is `from_`, read and written as `from`.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    from_: Literal["folder", "pattern"] | None = Field(
        None, alias="from", description="default: pattern when a pattern is given, else folder"
    )
    pattern: str | None = Field(
        None, description="e.g. '{label}_{speaker}_{index}.wav'; other fields can split"
    )

    @model_validator(mode="after")
    def _mode(self) -> LabelConfig:
        if self.from_ is None:
            self.from_ = "pattern" if self.pattern else "folder"
        if self.pattern is not None:
            fields = compile_pattern(self.pattern).fields
            if self.from_ == "pattern" and "label" not in fields:
                raise ValueError(f"pattern {self.pattern!r} needs a {{label}} field")
        elif self.from_ == "pattern":
            raise ValueError("from: pattern needs a pattern, e.g. '{label}_{speaker}_{index}.wav'")
        return self

    def fields(self) -> tuple[str, ...]:
        return () if self.pattern is None else compile_pattern(self.pattern).fields


class AudioConfig(Section):
    """Audio -> log-mel pipeline; defaults are the selective-tuning seed's (SEEDS.md §1)."""

    sample_rate: int = Field(22050, ge=1000, description="resample to this rate (Hz)")
    trim_db: float | None = Field(60.0, gt=0, description="trim silence below max - dB; null: no")
    duration: float = Field(4.0, gt=0, description="seconds: pad or cut every clip to this")
    pad: Literal["zeros", "repeat"] = "zeros"
    n_mels: int = Field(128, ge=1)
    n_fft: int = Field(2048, ge=16)
    hop_length: int = Field(512, ge=1)
    scale: Literal["unit", "db"] = Field(
        "unit",
        description="unit: dB mapped to [0, 1] (0 = 80 dB below the clip's maximum), the "
        "range image backbones were pretrained on; db: raw dB in [-80, 0], as the seed",
    )
    cache: bool = Field(True, description="keep spectrograms on disk for the next load")
    cache_dir: str | None = Field(
        None, description="default: $EVOTUNE_CACHE/spectrograms or ~/.cache/evotune/spectrograms"
    )
    workers: int | None = Field(
        None, ge=1, description="processes computing spectrograms; default: CPUs - 1, max 8"
    )


class SplitConfig(Section):
    """How train, validation and test are made. Validation always comes from training."""

    val_fraction: float = Field(0.2, gt=0, lt=1, description="stratified, per class")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="stratified test split")
    test_where: dict[str, list[str]] | None = Field(
        None, description="pattern fields selecting the test files, e.g. {index: [0, 1]}"
    )
    group_by: str | None = Field(None, description="a pattern field kept inside one split")
    seed: int = Field(0, ge=0)

    @field_validator("test_where", mode="before")
    @classmethod
    def _as_string_lists(cls, value: Any) -> Any:
        # YAML reads `index: [0, 1]` as ints; file-name fields are strings.
        if not isinstance(value, dict):
            return value
        lists = {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return {k: [str(item) for item in v] for k, v in lists.items()}

    @model_validator(mode="after")
    def _one_test_rule(self) -> SplitConfig:
        if self.test_fraction is not None and self.test_where is not None:
            raise ValueError("set test_fraction or test_where, not both")
        return self


class DataConfig(Section):
    """The `data:` section: which source, where, and how to split and subset it."""

    source: Literal["idx", "imagefolder", "npz", "digits", "audio"] = "digits"
    path: str | None = Field(None, description="folder (idx, imagefolder, audio) or .npz file")
    test_path: str | None = Field(None, description="a separate test set of the same source")
    color: Literal["gray", "rgb"] | None = Field(
        None, description="imagefolder; default gray if every image is single-channel"
    )
    image_size: tuple[int, int] | None = Field(None, description="imagefolder: resize to [H, W]")
    layout: Literal["auto", "nchw", "nhwc"] = Field(
        "auto", description="npz, 4-D x: auto = NHWC if the last axis is 1, 3 or 4, else NCHW"
    )
    label: LabelConfig = LabelConfig()
    audio: AudioConfig = AudioConfig()
    split: SplitConfig = SplitConfig()
    classes: list[str | int] | None = Field(
        None, min_length=1, description="keep these classes (names or labels), in this order"
    )
    max_per_class: int | None = Field(None, ge=1, description="few-shot: training examples cap")
    on_error: Literal["raise", "skip"] = "raise"
    in_memory: Literal["auto"] | bool = Field(
        "auto",
        description="true: decode every example into memory; false: read them from disk "
        "batch by batch (a DataLoader); auto: false when they would exceed memory_gb",
    )
    memory_gb: float = Field(4.0, gt=0, description="in_memory auto: the decoded data's limit")
    stream_workers: int | None = Field(
        None,
        ge=0,
        description="processes reading examples when streaming; default: "
        "CPUs - 1, at most 8; 0: read them in the training process",
    )

    @field_validator("image_size")
    @classmethod
    def _positive(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"image_size must be two positive sizes [H, W], got {list(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.source == "digits" and self.path is not None:
            raise ValueError("source 'digits' is built in and takes no path")
        if self.source != "digits" and self.path is None:
            raise ValueError(f"path is required for source {self.source!r}")
        for key, sources in SOURCE_KEYS.items():
            # Compared with the default, not "was it set": a resolved config (config.yaml
            # of a run) lists every key with its default and must validate again.
            changed = getattr(self, key) != type(self).model_fields[key].default
            if changed and self.source not in sources:
                raise ValueError(
                    f"{key} applies to source {' or '.join(sources)}, not {self.source!r}"
                )
        carved = self.split.test_fraction is not None or self.split.test_where is not None
        if self.test_path is not None and carved:
            raise ValueError("test_path gives the test set: drop split.test_fraction/test_where")
        if self.source == "audio" and self.in_memory is False and not self.audio.cache:
            raise ValueError(
                "in_memory: false streams spectrograms from their cache: set audio.cache: true"
            )
        self._check_fields()
        return self

    def _check_fields(self) -> None:
        """group_by and test_where name fields of the audio file-name pattern."""
        used = list(self.split.test_where or {})
        used += [self.split.group_by] if self.split.group_by else []
        if not used:
            return
        fields = self.label.fields() if self.source == "audio" else ()
        if not fields:
            raise ValueError(
                "split.group_by and split.test_where need per-file fields: "
                "use source audio with a label.pattern such as '{label}_{speaker}_{index}.wav'"
            )
        for name in used:
            if name not in fields:
                raise ValueError(
                    f"split: {name!r} is not a field of label.pattern{did_you_mean(name, fields)}; "
                    f"fields: {', '.join(fields)}"
                )
