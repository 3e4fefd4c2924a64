from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from evotune.data import DataConfig

FSDD = {"source": "audio", "path": "wavs", "label": {"pattern": "{label}_{speaker}_{index}.wav"}}


def test_defaults_are_the_embedded_digits_and_the_seed_audio_pipeline():
    config = DataConfig()
    assert config.source == "digits" and config.path is None
    assert (config.audio.sample_rate, config.audio.duration, config.audio.trim_db) == (
        22050,
        4.0,
        60.0,
    )
    assert (config.audio.n_mels, config.audio.n_fft, config.audio.hop_length) == (128, 2048, 512)
    assert config.split.val_fraction == 0.2 and config.on_error == "raise"


def test_label_from_is_read_and_written_as_from():
    config = DataConfig.model_validate(FSDD)
    assert config.label.from_ == "pattern"  # a pattern implies labels from file names
    dumped = config.model_dump(mode="json")
    assert dumped["label"] == {"from": "pattern", "pattern": "{label}_{speaker}_{index}.wav"}
    # The resolved config written to a run directory reads back the same.
    assert DataConfig.model_validate(yaml.safe_load(yaml.safe_dump(dumped))) == config
    assert DataConfig.model_validate({**FSDD, "label": {"from": "folder"}}).label.from_ == "folder"


def test_test_where_values_become_strings():
    config = DataConfig.model_validate(
        {**FSDD, "split": {"test_where": {"index": [0, 1], "speaker": "theo"}}}
    )
    assert config.split.test_where == {"index": ["0", "1"], "speaker": ["theo"]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"source": "idx"}, "path is required for source 'idx'"),
        ({"path": "x"}, "source 'digits' is built in and takes no path"),
        (
            {"source": "idx", "path": "x", "color": "rgb"},
            "color applies to source imagefolder, not 'idx'",
        ),
        ({"source": "npz", "path": "x", "audio": {"n_mels": 64}}, "audio applies to source audio"),
        (
            {"source": "idx", "path": "x", "test_path": "y"},
            "test_path applies to source imagefolder or npz or audio",
        ),
        (
            {"source": "imagefolder", "path": "x", "image_size": [0, 4]},
            "image_size must be two positive sizes",
        ),
        (
            {"source": "audio", "path": "x", "label": {"from": "pattern"}},
            "from: pattern needs a pattern",
        ),
        ({**FSDD, "label": {"pattern": "{digit}_{speaker}.wav"}}, "needs a {label} field"),
        ({**FSDD, "label": {"pattern": "{label}_{label}.wav"}}, "appears twice"),
        (
            {**FSDD, "split": {"group_by": "speakr"}},
            "'speakr' is not a field of label.pattern (did you mean 'speaker'?)",
        ),
        ({**FSDD, "split": {"test_where": {"idx": [0]}}}, "'idx' is not a field of label.pattern"),
        ({"source": "idx", "path": "x", "split": {"group_by": "speaker"}}, "need per-file fields"),
        (
            {**FSDD, "split": {"test_fraction": 0.2, "test_where": {"index": [0]}}},
            "set test_fraction or test_where, not both",
        ),
        (
            {**FSDD, "test_path": "t", "split": {"test_fraction": 0.2}},
            "test_path gives the test set",
        ),
        ({"split": {"val_fraction": 1.0}}, "less than 1"),
        ({"max_per_class": 0}, "greater than or equal to 1"),
        ({"classes": []}, "at least 1 item"),
        ({"sourse": "idx"}, "Extra inputs are not permitted"),
        ({"audio": {"n_melz": 64}}, "Extra inputs are not permitted"),
    ],
)
def test_bad_configs_are_rejected_with_the_reason(raw, message):
    with pytest.raises(ValidationError) as caught:
        DataConfig.model_validate(raw)
    assert message in str(caught.value)
