from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from evotune.data.pattern import compile_pattern


@pytest.mark.parametrize(
    ("pattern", "relative", "fields"),
    [
        (
            "{label}_{speaker}_{index}.wav",
            "7_jackson_32.wav",
            {"label": "7", "speaker": "jackson", "index": "32"},
        ),
        (
            "{label}_{speaker}_{index}.wav",
            "sub/7_jackson_32.wav",
            {"label": "7", "speaker": "jackson", "index": "32"},
        ),
        (
            "{label}_{speaker}_{index}",
            "7_theo_1.flac",
            {"label": "7", "speaker": "theo", "index": "1"},
        ),
        (
            "fold{fold}/{id}-{label}-*.wav",
            "fold3/1234-5-0-2.wav",
            {"fold": "3", "id": "1234", "label": "5"},
        ),
        ("{label}.wav", "a.b.wav", {"label": "a.b"}),
    ],
)
def test_patterns_extract_fields(pattern, relative, fields):
    assert compile_pattern(pattern).match(PurePosixPath(relative)) == fields


@pytest.mark.parametrize(
    ("pattern", "relative"),
    [
        ("{label}_{speaker}_{index}.wav", "7-jackson-32.wav"),
        ("{label}_{speaker}_{index}.wav", "7_jackson_32.flac"),
        ("{label}.wav", "x.wav.bak"),
        ("fold{fold}/{label}.wav", "other/3.wav"),
        ("(x){label}.wav", "x3.wav"),  # regex characters in the pattern are literal
    ],
)
def test_non_matching_files_give_none(pattern, relative):
    assert compile_pattern(pattern).match(PurePosixPath(relative)) is None


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("plain.wav", "has no {field}"),
        ("{label}_{label}.wav", "appears twice"),
        ("{1abc}.wav", "is not a field name"),
        ("{label.wav", "unbalanced brace"),
    ],
)
def test_malformed_patterns_are_rejected(pattern, message):
    with pytest.raises(ValueError, match=message):
        compile_pattern(pattern)
