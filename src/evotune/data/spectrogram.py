"""Audio file -> fixed-length log-mel spectrogram, with an on-disk cache.

Pipeline (the selective-tuning seed's, SEEDS.md §1): decode, mix to mono, resample,
trim silence, pad (zeros or repeat) or cut to `duration`, mel power spectrogram,
power_to_db(ref=max). The cache key is the sha256 of the file's bytes plus every
pipeline parameter, so an edited file or a changed parameter is recomputed; entries
are plain .npy files (never pickle), written atomically.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from evotune.data.raw import ErrorPolicy

TOP_DB = 80.0  # power_to_db's floor below each clip's maximum
PIPELINE_VERSION = 1  # bump when the pipeline changes, so old cache entries are ignored
PARALLEL_MIN = 64  # fewer files are computed in-process: a worker takes 2-5 s to start


class AudioError(Exception):
    """A file that cannot be decoded as audio."""


@dataclass(frozen=True)
class SpectrogramParams:
    sample_rate: int
    trim_db: float | None
    duration: float
    pad: str
    n_mels: int
    n_fft: int
    hop_length: int

    @property
    def n_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, self.n_mels, 1 + self.n_samples // self.hop_length)  # centred frames

    def salt(self) -> bytes:
        """Everything besides the file's bytes that the spectrogram depends on."""
        import librosa

        settings = {**asdict(self), "version": PIPELINE_VERSION, "librosa": librosa.__version__}
        return json.dumps(settings, sort_keys=True).encode()


def cache_key(content: bytes, salt: bytes) -> str:
    """sha256 of a file's bytes and the pipeline settings (`SpectrogramParams.salt`)."""
    digest = hashlib.sha256(content)
    digest.update(salt)
    return digest.hexdigest()


def decode(content: bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of an encoded WAV/FLAC/OGG file."""
    import soundfile

    try:  # soundfile's LibsndfileError is a RuntimeError
        samples, rate = soundfile.read(io.BytesIO(content), dtype="float32", always_2d=True)
    except (RuntimeError, ValueError, TypeError, EOFError) as err:
        raise AudioError(f"unreadable audio ({err})") from None
    if len(samples) == 0:
        raise AudioError("audio file holds no samples")
    return samples.mean(axis=1), int(rate)


def compute_spectrogram(samples: np.ndarray, rate: int, params: SpectrogramParams) -> np.ndarray:
    """float32 (1, n_mels, T) log-mel spectrogram in dB relative to its maximum."""
    import librosa

    signal = librosa.resample(samples, orig_sr=rate, target_sr=params.sample_rate)
    if params.trim_db is not None:
        signal, _ = librosa.effects.trim(signal, top_db=params.trim_db)
    signal = fit_length(signal, params.n_samples, params.pad)
    # librosa.feature.melspectrogram's defaults, with the mel filter bank built once
    # instead of per file (it took a quarter of the time).
    stft = librosa.stft(signal, n_fft=params.n_fft, hop_length=params.hop_length)
    power = mel_basis(params.sample_rate, params.n_fft, params.n_mels) @ (np.abs(stft) ** 2)
    return librosa.power_to_db(power, ref=np.max, top_db=TOP_DB).astype(np.float32)[None]


@functools.lru_cache(maxsize=8)
def mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)


def fit_length(signal: np.ndarray, n: int, pad: str) -> np.ndarray:
    """Cut to the first n samples, or pad at the end with zeros or by repeating the clip."""
    if len(signal) >= n:
        return signal[:n]
    if pad == "repeat" and len(signal) > 0:
        return np.tile(signal, -(-n // len(signal)))[:n]
    return np.pad(signal, (0, n - len(signal)))


def spectrogram_of_file(
    path: str, params: SpectrogramParams, cache_file: str | None
) -> tuple[np.ndarray | None, str | None]:
    """(spectrogram, None) or (None, problem); runs in worker processes too."""
    try:
        content = Path(path).read_bytes()
        samples, rate = decode(content)
    except (OSError, AudioError) as err:
        return None, str(err)
    spectrogram = compute_spectrogram(samples, rate, params)
    if cache_file is not None:
        write_npy(Path(cache_file), spectrogram)
    return spectrogram, None


def spectrograms(
    paths: list[Path],
    params: SpectrogramParams,
    cache_dir: Path | None,
    workers: int | None,
    policy: ErrorPolicy,
) -> tuple[np.ndarray, np.ndarray]:
    """Spectrograms (N, 1, n_mels, T) of `paths`, and a mask of the files that decoded
    (a skipped bad file leaves zeros). Cached spectrograms are read, not recomputed."""
    out = np.zeros((len(paths), *params.shape), dtype=np.float32)  # filled in place
    done = np.zeros(len(paths), dtype=bool)
    jobs: list[tuple[int, str | None]] = []  # (index, cache file) still to compute
    for i, cache_file in _cache_files(paths, params, cache_dir, policy):
        if cache_file is not None:
            cached = read_cached(cache_file, params.shape)
            if cached is not None:
                out[i], done[i] = cached, True
                continue
        jobs.append((i, None if cache_file is None else str(cache_file)))
    computed = _compute([(str(paths[i]), cache) for i, cache in jobs], params, workers)
    for (i, _), (spectrogram, problem) in zip(jobs, computed):
        if problem is not None:
            policy.bad_file(paths[i], problem)
        else:
            out[i], done[i] = spectrogram, True
    return out, done


def cached_spectrograms(
    paths: list[Path],
    params: SpectrogramParams,
    cache_dir: Path,
    workers: int | None,
    policy: ErrorPolicy,
    chunk: int = 512,
) -> tuple[list[Path], np.ndarray]:
    """Make sure the cache holds every file's spectrogram, computing the missing ones
    `chunk` files at a time (never all in memory: the data streams from the cache);
    returns each file's cache entry and a mask of the files that decoded."""
    entries = [Path()] * len(paths)
    done = np.zeros(len(paths), dtype=bool)
    jobs: list[int] = []
    for i, cache_file in _cache_files(paths, params, cache_dir, policy):
        entries[i] = cache_file
        if cache_file.is_file():
            done[i] = True
        else:
            jobs.append(i)
    for start in range(0, len(jobs), chunk):
        part = jobs[start : start + chunk]
        computed = _compute([(str(paths[i]), str(entries[i])) for i in part], params, workers)
        for i, (_, problem) in zip(part, computed):
            if problem is not None:
                policy.bad_file(paths[i], problem)
            else:
                done[i] = True
    return entries, done


def _cache_files(
    paths: list[Path], params: SpectrogramParams, cache_dir: Path | None, policy: ErrorPolicy
) -> list[tuple[int, Path | None]]:
    """(index, cache entry or None without a cache) of every file that can be read."""
    if cache_dir is None:
        return [(i, None) for i in range(len(paths))]
    salt, found = params.salt(), []
    for i, path in enumerate(paths):
        try:
            found.append((i, cache_dir / f"{cache_key(path.read_bytes(), salt)}.npy"))
        except OSError as err:
            policy.bad_file(path, f"unreadable file ({err})")
    return found


def _compute(
    jobs: list[tuple[str, str | None]], params: SpectrogramParams, workers: int | None
) -> list[tuple[np.ndarray | None, str | None]]:
    import joblib

    n_jobs = min(workers or default_workers(), len(jobs))
    if n_jobs < 2 or len(jobs) < PARALLEL_MIN:
        from threadpoolctl import threadpool_limits

        # One BLAS thread: the per-file matrices are small, and BLAS threads spinning
        # for work cost more than they save (as joblib also does in its workers).
        with threadpool_limits(limits=1):
            return [spectrogram_of_file(path, params, cache) for path, cache in jobs]
    # Processes, not threads: most of the pipeline holds the GIL.
    run = joblib.Parallel(n_jobs=n_jobs)
    return run(joblib.delayed(spectrogram_of_file)(path, params, cache) for path, cache in jobs)


def default_workers() -> int:
    """CPUs - 1, at most 8. Each worker takes 2-5 s of CPU to start (torch, scipy, numba
    imports), so on 2 CPUs one in-process loop beat two workers on FSDD (2,500 files)."""
    import joblib

    return max(1, min(joblib.cpu_count() - 1, 8))


def read_cached(cache_file: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """A cached spectrogram, or None when absent, unreadable or of the wrong shape."""
    try:
        array = np.load(cache_file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    ok = isinstance(array, np.ndarray) and array.shape == shape and array.dtype == np.float32
    return array if ok else None


def write_npy(target: Path, array: np.ndarray) -> None:
    """Write atomically: a concurrent or interrupted writer never leaves half a file."""
    # A plain unique name: tempfile.mkstemp cost ~1 ms per file on this file system.
    temporary = target.with_name(f"{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as stream:
            np.save(stream, array, allow_pickle=False)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
