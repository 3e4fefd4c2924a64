"""A folder of WAV/FLAC/OGG files -> log-mel spectrograms (1, n_mels, T).

Labels come from the first-level sub-folder (`label.from: folder`) or from a file-name
pattern (`label.from: pattern`, e.g. "{label}_{speaker}_{index}.wav"). Every other
pattern field is kept per file: `split.test_where` and `split.group_by` use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from evotune.data.config import DataConfig, LabelConfig
from evotune.data.labels import encode, sort_names
from evotune.data.pattern import compile_pattern
from evotune.data.raw import ErrorPolicy, Examples, Loaded, existing
from evotune.data.spectrogram import (
    TOP_DB,
    AudioError,
    SpectrogramParams,
    cached_spectrograms,
    read_cached,
    spectrogram_of_file,
    spectrograms,
)
from evotune.data.stream import FileInputs, decoded_bytes, streams
from evotune.errors import UserError
from evotune.paths import cache_dir

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}


@dataclass
class AudioFile:
    path: Path
    label: str
    fields: dict[str, str]


def load_audio(config: DataConfig) -> Loaded:
    policy = ErrorPolicy(skip=config.on_error == "skip")
    root = existing(config.path, "folder")
    params = spectrogram_params(config)
    cache_dir = _cache_dir(config)
    found = list_audio_files(root, config.label, policy)
    test_root, test_found = None, None
    if config.test_path is not None:
        test_root = existing(config.test_path, "folder", key="data.test_path")
        test_found = list_audio_files(test_root, config.label, policy)
    n = len(found) + len(test_found or [])
    on_disk = streams(config.in_memory, config.memory_gb, n, params.shape)
    notes = []
    if on_disk and cache_dir is None:  # in_memory: auto (false without a cache is refused)
        on_disk = False
        notes.append(
            f"{n} spectrograms take {decoded_bytes(n, params.shape) / 2**30:.1f} GB in memory, "
            "above data.memory_gb: set data.audio.cache: true to stream them from disk instead"
        )
    read = _Reader(params, cache_dir, config.audio.workers, policy, config.audio.scale, on_disk)
    files, x = read(found)
    classes = sort_names(f.label for f in files)
    loaded = Loaded(data=_examples(files, x, classes, str(root)), classes=classes, origin=str(root))
    if test_root is not None and test_found is not None:
        test_files, test_x = read(test_found)
        loaded.test = _examples(test_files, test_x, classes, str(test_root))
        loaded.test_origin = str(test_root)
    loaded.notes = policy.notes() + notes
    return loaded


def spectrogram_params(config: DataConfig) -> SpectrogramParams:
    audio = config.audio
    return SpectrogramParams(
        sample_rate=audio.sample_rate,
        trim_db=audio.trim_db,
        duration=audio.duration,
        pad=audio.pad,
        n_mels=audio.n_mels,
        n_fft=audio.n_fft,
        hop_length=audio.hop_length,
    )


def scaled(db: np.ndarray, scale: str) -> np.ndarray:
    """Spectrograms in the input range asked for. The cache keeps dB (the seed's
    pipeline): a backbone pretrained on [0, 1] images sees [-80, 0] inputs as far out of
    distribution (frozen batch norms amplify them), so `unit` is the default."""
    if scale == "db":
        return db
    return np.clip(db / TOP_DB + 1.0, 0.0, 1.0, out=db)


@dataclass
class _Reader:
    params: SpectrogramParams
    cache_dir: Path | None
    workers: int | None
    policy: ErrorPolicy
    scale: str
    on_disk: bool  # stream from the spectrogram cache instead of stacking them

    def __call__(self, files: list[AudioFile]) -> tuple[list[AudioFile], np.ndarray | FileInputs]:
        """The files that decoded, and their spectrograms (stacked, or on disk)."""
        paths = [f.path for f in files]
        if self.on_disk:
            assert self.cache_dir is not None
            entries, done = cached_spectrograms(
                paths, self.params, self.cache_dir, self.workers, self.policy
            )
        else:
            x, done = spectrograms(paths, self.params, self.cache_dir, self.workers, self.policy)
        kept = [f for f, ok in zip(files, done) if ok]
        if len(kept) < len(files):
            _check_classes_left(files, kept)
        if self.on_disk:
            cached = [entry for entry, ok in zip(entries, done) if ok]
            return kept, SpectrogramFiles([f.path for f in kept], cached, self.params, self.scale)
        return kept, scaled(x if done.all() else x[done], self.scale)


class SpectrogramFiles(FileInputs):
    """Spectrograms read from their cache entries (recomputed when an entry went
    missing), scaled as in memory: the same values as the in-memory path."""

    def __init__(
        self, paths: list[Path], entries: list[Path], params: SpectrogramParams, scale: str
    ) -> None:
        super().__init__(paths, params.shape)
        self.entries, self.params, self.scale = list(entries), params, scale

    def read(self, i: int) -> np.ndarray:
        spectrogram = read_cached(self.entries[i], self.params.shape)
        if spectrogram is None:
            spectrogram, problem = spectrogram_of_file(
                str(self.paths[i]), self.params, str(self.entries[i])
            )
            if spectrogram is None:
                raise AudioError(problem)
        return scaled(spectrogram, self.scale)

    def subset(self, rows: np.ndarray) -> SpectrogramFiles:
        paths, entries = [self.paths[i] for i in rows], [self.entries[i] for i in rows]
        return SpectrogramFiles(paths, entries, self.params, self.scale)


def _check_classes_left(files: list[AudioFile], kept: list[AudioFile]) -> None:
    # A class whose every file was skipped would silently vanish: say so instead.
    left = {f.label for f in kept}
    for f in files:
        if f.label not in left:
            raise UserError(
                f"{f.path}: no readable audio file of class {f.label!r} (this one neither)"
            )


def list_audio_files(root: Path, label: LabelConfig, policy: ErrorPolicy) -> list[AudioFile]:
    """Every audio file under root with its label and pattern fields (sorted by path)."""
    pattern = compile_pattern(label.pattern) if label.pattern else None
    found = []
    for path, folder in _candidates(root, by_folder=label.from_ == "folder"):
        fields: dict[str, str] | None = {}
        if pattern is not None:
            fields = pattern.match(PurePosixPath(path.relative_to(root).as_posix()))
            if fields is None:
                policy.bad_file(path, f"file name does not match label.pattern {pattern.text!r}")
                continue
        found.append(AudioFile(path=path, label=folder or fields["label"], fields=fields))
    if not found:
        raise UserError(f"{root}: no audio file matches label.pattern {label.pattern!r}")
    return found


def _candidates(root: Path, by_folder: bool) -> list[tuple[Path, str | None]]:
    """(file, class folder name or None) for the audio files under root."""
    if not by_folder:
        files = _audio_files(root)
        if not files:
            raise UserError(f"{root}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
        return [(path, None) for path in files]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        loose = len(_audio_files(root))
        hint = f" ({loose} audio files lie directly in it: use label.pattern)" if loose else ""
        raise UserError(f"{root}: no class sub-folders for label.from: folder{hint}")
    found = []
    for folder in folders:
        files = _audio_files(folder)
        if not files:
            raise UserError(f"{folder}: empty class folder (no .wav, .flac or .ogg files)")
        found += [(path, folder.name) for path in files]
    return found


def _audio_files(folder: Path) -> list[Path]:
    # Names starting with "." are hidden files, e.g. macOS "._x.wav" metadata twins.
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _examples(
    files: list[AudioFile], x: np.ndarray | FileInputs, classes: list[str], where: str
) -> Examples:
    labels = encode(np.array([f.label for f in files]), classes, where)
    names = files[0].fields.keys() if files else []
    fields = {name: np.array([f.fields[name] for f in files]) for name in names}
    return Examples(x=x, labels=labels, fields=fields)


def _cache_dir(config: DataConfig) -> Path | None:
    if not config.audio.cache:
        return None
    try:
        if config.audio.cache_dir is None:
            return cache_dir("spectrograms")  # $EVOTUNE_CACHE or the user cache folder
        folder = Path(config.audio.cache_dir).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    except OSError as err:
        raise UserError(
            f"data.audio.cache_dir: cannot create the spectrogram cache ({err}); "
            "set another cache_dir or cache: false"
        ) from None
