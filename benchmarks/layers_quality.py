"""The first seed's claim on real data: GA layer selection vs full fine-tuning, head only,
last-k and random masks (same evaluation budget), test accuracy mean +- std over seeds.

Backbone: evotune's small ResNet pretrained on the MNIST test set (`evotune pretrain`).
Targets: (a) spoken digits (FSDD, log-mel, official split: recordings 0-4 are the test
set, so no speaker's test recordings are seen in training), (b) scikit-learn's digits.

    python benchmarks/layers_quality.py [--quick] [--seeds 3] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import fsdd_data, mnist_backbone  # noqa: E402

METHODS = ("search", "full", "head", "last_k", "random")


def targets(quick: bool) -> dict[str, dict]:
    return {
        "fsdd": fsdd_data(max_per_class=20 if quick else 50),
        "digits": {
            "source": "digits",
            "max_per_class": 10,
            "split": {"val_fraction": 0.3, "test_fraction": 0.3},
        },
    }


def run_one(data: dict, backbone: Path, seed: int, quick: bool, out: Path) -> dict:
    from evotune.config import resolve
    from evotune.runner import start

    config = {
        "task": {"name": "layers", "baselines": list(METHODS[1:])},
        "data": {**data, "split": {**data["split"], "seed": seed}},
        "model": {
            "backbone": f"file:{backbone}",
            "granularity": "leaf",
            "channels": "keep",
            "normalize": "none",
        },
        "search": {
            "preset": "seed",
            "population": 12 if quick else 24,
            "elitism": 6 if quick else 12,
            "generations": 3 if quick else 8,
            "seed": seed,
        },
        "fitness": {"epochs": 3 if quick else 8, "batch_size": 32, "lr": 2e-3, "device": "cpu"},
        "output": {"report": False},
    }
    summary = start(resolve(config), out)
    rows = {"search": summary["best"], **summary["baselines"]}
    return {
        name: (rows[name]["metrics"]["test_accuracy"], rows[name]["metrics"]["trainable_params"])
        for name in METHODS
    }


def table(name: str, results: list[dict], budget: str) -> list[str]:
    lines = [
        f"**{name}** ({budget})",
        "",
        "| method | test accuracy (mean +- std) | trainable params (mean) |",
        "|---|---|---|",
    ]
    for method in METHODS:
        acc = [r[method][0] for r in results]
        params = [r[method][1] for r in results]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        lines.append(
            f"| {method} | {statistics.mean(acc):.4f} +- {std:.4f} | "
            f"{statistics.mean(params):,.0f} |"
        )
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    backbone = mnist_backbone()
    began = time.perf_counter()
    budget = (
        "population 12, 3 generations, 3 epochs"
        if args.quick
        else "population 24, 8 generations, 8 epochs"
    )
    lines = [
        f"`python benchmarks/layers_quality.py{' --quick' if args.quick else ''} "
        f"--seeds {args.seeds}` ({time.strftime('%Y-%m-%d')}, 2 CPU cores)",
        "",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for name, data in targets(args.quick).items():
            results = [
                run_one(data, backbone, seed, args.quick, Path(folder) / f"{name}{seed}")
                for seed in range(args.seeds)
            ]
            lines += table(name, results, budget)
    lines.append(f"Wall time: {(time.perf_counter() - began) / 60:.1f} min.")
    print("\n".join(lines))
    if args.write:
        with open(args.write, "a", encoding="utf-8") as handle:
            handle.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
