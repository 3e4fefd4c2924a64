from __future__ import annotations

import librosa
import numpy as np
import pytest
from datagen import tone

from evotune.data.spectrogram import (
    SpectrogramParams,
    cache_key,
    compute_spectrogram,
    fit_length,
    read_cached,
    write_npy,
)

PARAMS = SpectrogramParams(
    sample_rate=8000, trim_db=60.0, duration=0.5, pad="zeros", n_mels=16, n_fft=256, hop_length=128
)


def test_matches_librosa_melspectrogram_with_the_seed_steps():
    signal = np.concatenate([np.zeros(800, np.float32), tone(700.0, rate=16000)])
    ours = compute_spectrogram(signal, 16000, PARAMS)
    y = librosa.resample(signal, orig_sr=16000, target_sr=8000)
    y, _ = librosa.effects.trim(y, top_db=60.0)
    y = librosa.util.fix_length(y, size=4000)
    power = librosa.feature.melspectrogram(y=y, sr=8000, n_fft=256, hop_length=128, n_mels=16)
    expected = librosa.power_to_db(power, ref=np.max)
    assert ours.shape == PARAMS.shape == (1, 16, 1 + 4000 // 128)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours[0], expected, atol=1e-3)
    assert ours.max() == 0.0  # dB relative to the maximum


def test_trim_removes_leading_silence():
    # librosa trims in frames of 2048 samples (hop 512): up to ~1000 zeros may remain.
    signal = np.concatenate([np.zeros(3000, np.float32), tone(700.0, seconds=0.2)])
    trimmed = compute_spectrogram(signal, 8000, PARAMS)
    no_trim = SpectrogramParams(**{**PARAMS.__dict__, "trim_db": None})
    untrimmed = compute_spectrogram(signal, 8000, no_trim)
    assert trimmed[0, :, 10].max() > -10  # the tone plays at 0.16 s
    assert untrimmed[0, :, 10].max() < -60  # still silence


def test_fit_length_cuts_pads_and_repeats():
    clip = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    assert fit_length(clip, 2, "zeros").tolist() == [1.0, 2.0]
    assert fit_length(clip, 5, "zeros").tolist() == [1.0, 2.0, 3.0, 0.0, 0.0]
    assert fit_length(clip, 7, "repeat").tolist() == [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]
    assert fit_length(clip[:0], 2, "repeat").tolist() == [0.0, 0.0]  # silence trimmed away


def test_cache_key_depends_on_content_and_every_parameter():
    keys = {cache_key(b"abc", PARAMS.salt()), cache_key(b"abd", PARAMS.salt())}
    for name, value in [("n_mels", 32), ("pad", "repeat"), ("trim_db", None), ("hop_length", 64)]:
        changed = SpectrogramParams(**{**PARAMS.__dict__, name: value})
        keys.add(cache_key(b"abc", changed.salt()))
    assert len(keys) == 6


def test_cached_arrays_round_trip_and_bad_entries_are_ignored(tmp_path):
    array = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    write_npy(tmp_path / "k.npy", array)
    assert np.array_equal(read_cached(tmp_path / "k.npy", (1, 2, 3)), array)
    assert read_cached(tmp_path / "k.npy", (1, 3, 2)) is None  # wrong shape: recompute
    assert read_cached(tmp_path / "absent.npy", (1, 2, 3)) is None
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    assert read_cached(tmp_path / "bad.npy", (1, 2, 3)) is None
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


@pytest.mark.parametrize("pad", ["zeros", "repeat"])
def test_padding_of_a_short_clip(pad):
    params = SpectrogramParams(**{**PARAMS.__dict__, "pad": pad})
    spectrogram = compute_spectrogram(tone(700.0, seconds=0.2), 8000, params)
    tail = spectrogram[0, :, -3:].max()
    assert (tail > -10) if pad == "repeat" else (tail < -60)
