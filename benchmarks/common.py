"""Shared pieces of the benchmarks: real data paths and a backbone pretrained on MNIST."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

SHARED = Path(os.environ.get("EVOTUNE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MNIST = SHARED / "data" / "mnist-t10k"
FSDD = SHARED / "data" / "fsdd" / "recordings"


def require(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"benchmark data not found: {path} (set EVOTUNE_SHARED to the shared folder)")
    return path


def mnist_backbone(name: str = "small_resnet", epochs: int = 3) -> Path:
    """`builtin:<name>` pretrained on the MNIST test set with `evotune pretrain`, cached."""
    from evotune.data import DataConfig
    from evotune.models import ModelConfig
    from evotune.paths import cache_dir
    from evotune.pretrain import PretrainConfig, PretrainSettings, pretrain

    path = cache_dir("backbones") / f"bench-{name}-mnist-e{epochs}.safetensors"
    if not path.exists():
        config = PretrainConfig(
            data=DataConfig(
                source="idx",
                path=str(require(MNIST)),
                split={"val_fraction": 0.1, "test_fraction": 0.1},
            ),
            model=ModelConfig(backbone=f"builtin:{name}", channels="keep", normalize="none"),
            pretrain=PretrainSettings(epochs=epochs, batch_size=128, lr=2e-3, device="cpu"),
        )
        result = pretrain(config, path)
        print(
            f"pretrained {name} on MNIST: test accuracy {result['test_accuracy']:.4f}",
            file=sys.stderr,
        )
    return path


def fsdd_data(**overrides) -> dict:
    """FSDD as log-mel images, official split (index 0-4 = test)."""
    return {
        "source": "audio",
        "path": str(require(FSDD)),
        "label": {"from": "pattern", "pattern": "{label}_{speaker}_{index}.wav"},
        "audio": {
            "sample_rate": 8000,
            "duration": 1.0,
            "n_mels": 64,
            "n_fft": 512,
            "hop_length": 256,
        },
        "split": {"val_fraction": 0.2, "test_where": {"index": ["0", "1", "2", "3", "4"]}},
        **overrides,
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
