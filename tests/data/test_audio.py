from __future__ import annotations

import joblib
import numpy as np
import pytest
import soundfile
import torch
from datagen import FAST_AUDIO, FSDD_LABEL, SPEAKERS, TONES, tone, write_fsdd

import evotune.data.spectrogram as spectrogram_module
from evotune.data import DataConfig, load_data
from evotune.errors import UserError


def audio_config(path, cache_dir=None, audio=None, **extra) -> DataConfig:
    settings = {**FAST_AUDIO, **(audio or {})}
    if cache_dir is not None:
        settings["cache_dir"] = str(cache_dir)
    extra.setdefault("label", FSDD_LABEL)
    return DataConfig(source="audio", path=str(path), audio=settings, **extra)


@pytest.fixture
def computed(monkeypatch) -> list[int]:
    """Counts calls of the function that computes spectrograms (cache misses)."""
    calls: list[int] = []
    original = spectrogram_module.compute_spectrogram

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(spectrogram_module, "compute_spectrogram", counting)
    return calls


def everything(data):
    splits = [s for s in (data.train, data.val, data.test) if s is not None]
    return torch.cat([s.x for s in splits]), torch.cat([s.y for s in splits])


def test_fsdd_like_files_become_labelled_log_mel_spectrograms(tmp_path):
    write_fsdd(tmp_path / "wav")
    data = load_data(audio_config(tmp_path / "wav"))
    assert data.classes == list(TONES)
    assert data.input_shape == (1, 16, 1 + 4000 // 128)
    x, y = everything(data)
    assert len(x) == 3 * 2 * 4 and x.dtype == torch.float32
    assert x.amax(dim=(1, 2, 3)).eq(1).all()  # unit scale: each clip's maximum is 1
    assert x.min() >= 0
    # Higher pitch, higher loudest mel band: the label travels with its own file.
    loudest_band = x[:, 0].mean(dim=2).argmax(dim=1)
    for low, high in zip(range(2), range(1, 3)):
        assert loudest_band[y == low].max() < loudest_band[y == high].min()


def test_label_from_folder_and_flac(tmp_path):
    for name, frequency in (("low", 300.0), ("high", 2000.0)):
        folder = tmp_path / name / "nested"
        folder.mkdir(parents=True)
        for i in range(3):
            soundfile.write(folder / f"{i}.flac", tone(frequency * (1 + 0.01 * i)), 8000)
    (tmp_path / "low" / "readme.txt").write_text("ignored: not audio")
    data = load_data(audio_config(tmp_path, label={"from": "folder"}))
    assert data.classes == ["high", "low"]
    x, y = everything(data)
    assert len(x) == 6
    loudest_band = x[:, 0].mean(dim=2).argmax(dim=1)
    assert loudest_band[y == 0].min() > loudest_band[y == 1].max()


def test_stereo_and_other_rates_are_mixed_and_resampled(tmp_path):
    write_fsdd(tmp_path, classes=("0",), indices=range(2))
    stereo = np.stack([tone(300.0, rate=22050), tone(300.0, rate=22050)], axis=1)
    soundfile.write(tmp_path / "1_ann_0.wav", stereo, 22050)
    soundfile.write(tmp_path / "1_bob_0.wav", stereo * 0.5, 22050)
    data = load_data(audio_config(tmp_path))
    assert data.input_shape == (1, 16, 32) and data.classes == ["0", "1"]


def test_test_where_selects_exactly_the_matching_files(tmp_path):
    write_fsdd(tmp_path, speakers=SPEAKERS)
    by_index = load_data(
        audio_config(tmp_path, split={"test_where": {"index": [0, 3]}, "group_by": "index"})
    )
    assert len(by_index.test) == 3 * 4 * 2
    assert set(by_index.test.groups) == {"0", "3"}
    assert not {"0", "3"} & set(by_index.train.groups + by_index.val.groups)
    by_speaker = load_data(
        audio_config(tmp_path, split={"test_where": {"speaker": "bob"}, "group_by": "speaker"})
    )
    assert set(by_speaker.test.groups) == {"bob"} and len(by_speaker.test) == 3 * 4
    with pytest.raises(UserError, match=r"no file matches split.test_where \{'index': \['9'\]\}"):
        load_data(audio_config(tmp_path, split={"test_where": {"index": [9]}}))


def test_group_by_keeps_each_speaker_in_one_split(tmp_path):
    write_fsdd(tmp_path, speakers=SPEAKERS)
    for seed in range(3):
        split = {"group_by": "speaker", "test_fraction": 0.25, "val_fraction": 0.34, "seed": seed}
        data = load_data(audio_config(tmp_path, split=split))
        groups = [set(s.groups) for s in (data.train, data.val, data.test)]
        assert groups[0] and groups[1] and groups[2]
        assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
        assert set().union(*groups) == set(SPEAKERS)


def test_spectrograms_are_cached_and_recomputed_only_when_needed(tmp_path, computed):
    paths = write_fsdd(tmp_path / "wav")
    cache = tmp_path / "cache"
    first = load_data(audio_config(tmp_path / "wav", cache_dir=cache))
    assert len(computed) == 24 and len(list(cache.glob("*.npy"))) == 24
    second = load_data(audio_config(tmp_path / "wav", cache_dir=cache))
    assert len(computed) == 24  # all read back
    assert torch.equal(first.train.x, second.train.x)
    load_data(audio_config(tmp_path / "wav", cache_dir=cache, audio={"n_mels": 8}))
    assert len(computed) == 48  # another parameter: another key
    soundfile.write(paths[0], tone(440.0), 8000)  # new content, same name
    load_data(audio_config(tmp_path / "wav", cache_dir=cache))
    assert len(computed) == 49


def test_default_cache_dir_and_cache_off(tmp_path, computed, monkeypatch):
    write_fsdd(tmp_path / "wav", classes=("0", "1"), indices=range(2))
    monkeypatch.setenv("EVOTUNE_CACHE", str(tmp_path / "root"))
    load_data(audio_config(tmp_path / "wav"))
    assert len(list((tmp_path / "root" / "spectrograms").glob("*.npy"))) == 8
    load_data(audio_config(tmp_path / "wav", audio={"cache": False}))
    load_data(audio_config(tmp_path / "wav", audio={"cache": False}))
    assert len(computed) == 8 + 16


def test_parallel_workers_give_the_same_spectrograms(tmp_path, monkeypatch):
    write_fsdd(tmp_path / "wav", classes=("0", "1"), indices=range(2))
    serial = load_data(audio_config(tmp_path / "wav", audio={"cache": False}))
    monkeypatch.setattr(spectrogram_module, "PARALLEL_MIN", 2)
    started = []

    class CountingParallel(joblib.Parallel):
        def __init__(self, *args, **kwargs):
            started.append(kwargs.get("n_jobs"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(joblib, "Parallel", CountingParallel)
    # Threads run the same joblib code path without paying ~5 s of process start-up
    # (FSDD runs through real worker processes in the benchmark numbers instead).
    with joblib.parallel_config(backend="threading"):
        parallel = load_data(
            audio_config(tmp_path / "wav", cache_dir=tmp_path / "c", audio={"workers": 2})
        )
    assert started == [2]
    assert torch.equal(serial.train.x, parallel.train.x)
    assert len(list((tmp_path / "c").glob("*.npy"))) == 8  # the workers wrote the cache


def test_pattern_mismatch_raises_or_is_skipped(tmp_path):
    write_fsdd(tmp_path)
    soundfile.write(tmp_path / "stray-name.wav", tone(300.0), 8000)
    with pytest.raises(UserError, match=r"stray-name.wav: file name does not match label.pattern"):
        load_data(audio_config(tmp_path))
    data = load_data(audio_config(tmp_path, on_error="skip"))
    assert len(everything(data)[0]) == 24
    assert data.notes[0].startswith("skipped 1 bad file (first: ")


def test_unreadable_audio_raises_or_is_skipped(tmp_path):
    write_fsdd(tmp_path)
    (tmp_path / "1_ann_9.wav").write_bytes(b"RIFF....not really a wav")
    (tmp_path / "2_ann_9.wav").write_bytes(b"")
    with pytest.raises(UserError, match=r"1_ann_9.wav: unreadable audio"):
        load_data(audio_config(tmp_path))
    data = load_data(audio_config(tmp_path, on_error="skip"))
    assert len(everything(data)[0]) == 24
    assert "skipped 2 bad files" in data.notes[0]


def test_folder_problems_are_named(tmp_path):
    write_fsdd(tmp_path / "flat")
    with pytest.raises(
        UserError, match=r"flat: no class sub-folders .*24 audio files lie directly"
    ):
        load_data(audio_config(tmp_path / "flat", label={"from": "folder"}))
    write_fsdd(tmp_path / "nested" / "a")
    (tmp_path / "nested" / "b").mkdir()
    with pytest.raises(UserError, match=r"nested/b: empty class folder"):
        load_data(audio_config(tmp_path / "nested", label={"from": "folder"}))
    (tmp_path / "none").mkdir()
    with pytest.raises(UserError, match=r"none: no audio files"):
        load_data(audio_config(tmp_path / "none"))


def test_a_class_with_only_bad_files_is_an_error_even_when_skipping(tmp_path):
    write_fsdd(tmp_path, classes=("0", "1"))
    (tmp_path / "2_ann_0.wav").write_bytes(b"junk")
    with pytest.raises(UserError, match=r"2_ann_0.wav: no readable audio file of class '2'"):
        load_data(audio_config(tmp_path, on_error="skip"))


def test_a_cache_dir_that_cannot_be_created_is_a_user_error(tmp_path):
    write_fsdd(tmp_path / "wav", classes=("0", "1"), indices=range(2))
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(UserError, match=r"data.audio.cache_dir: cannot create .*taken"):
        load_data(audio_config(tmp_path / "wav", cache_dir=tmp_path / "taken"))


def test_db_scale_keeps_the_seeds_decibels_and_unit_is_their_affine_map(tmp_path):
    write_fsdd(tmp_path / "wav")
    unit, _ = everything(load_data(audio_config(tmp_path / "wav")))
    db, _ = everything(load_data(audio_config(tmp_path / "wav", audio={"scale": "db"})))
    assert db.amax(dim=(1, 2, 3)).eq(0).all()  # dB relative to each clip's maximum
    assert db.min() >= -80
    assert torch.allclose(unit, db / 80 + 1)
