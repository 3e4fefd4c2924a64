"""Genetic autoencoder quality on real MNIST digits: each mode with the same budget,
test RMSE and RBF-SVM test accuracy, beside the seed's reported numbers (SEEDS.md §4).

Data: the MNIST test set (../shared/data/mnist-t10k), 80% to train (train + validation
splits together: the task needs no validation), 20% held out to test, stratified.
Autoencoder 784-500-250-100-50, tied, no bias, ReLU, layer by layer.

Budget, per layer: G generations of population 10 (the seed's GA: keep the best 5,
uniform crossover p = 0.8, zero mutation 0.01, fitness 1/RMSE on 1024 training images).
`ga_assisted` adds K Adadelta steps (batch 32, lr 1) to each kept member every
generation, so one lineage has taken G x K steps per layer; `layerwise_sgd` gets the
same G x K steps per layer, and `sgd` (all layers end to end) the same total. The SVM
(C = 1, gamma = scale) learns from the codes of all 8,000 training images.

Defaults G = 40, K = 100 (about 20 minutes on a busy 2-core machine with --threads 1);
--quick: G = 8, K = 10 (about a minute).

    python benchmarks/weights_quality.py [--quick] [--threads 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch  # noqa: E402
from common import MNIST, require  # noqa: E402

from evotune.config import resolve  # noqa: E402
from evotune.runner import start  # noqa: E402

SIZES = [784, 500, 250, 100, 50]
SEED_REPORTED = {  # SEEDS.md §4 (full MNIST: 60k train, 10k test)
    "ga_assisted": (0.110, 0.9565),
    "ga_assisted, tanh output": (0.0996, 0.9831),
    "sgd": (0.327, 0.9348),
    "layerwise_sgd": (0.312, 0.9401),
}
MODES = {  # label -> (mode, output activation)
    "ga": ("ga", "linear"),
    "ga_assisted": ("ga_assisted", "linear"),
    "ga_assisted, tanh output": ("ga_assisted", "tanh"),
    "layerwise_sgd": ("layerwise_sgd", "linear"),
    "sgd": ("sgd", "linear"),
}


def raw_config(mode: str, output: str, generations: int, steps: int, seed: int) -> dict:
    layers = len(SIZES) - 1
    per_layer = generations * steps
    return {
        "task": {"name": "weights", "mode": mode, "sizes": SIZES, "output": output},
        "data": {
            "source": "idx",
            "path": str(require(MNIST)),
            "split": {"test_fraction": 0.2, "seed": 0},
        },
        "search": {"preset": "seed", "generations": generations, "seed": seed},
        "fitness": {
            "examples": 1024,
            "steps_per_generation": steps,
            "optimizer": "adadelta",
            "lr": 1.0,
            "batch_size": 32,
            "steps": per_layer * (layers if mode == "sgd" else 1),
            "device": "cpu",
        },
        "output": {"report": False},
    }


def run(label: str, args: argparse.Namespace, folder: Path) -> dict:
    mode, output = MODES[label]
    config = resolve(raw_config(mode, output, args.generations, args.steps, args.seed))
    began = time.perf_counter()
    summary = start(config, folder / label.replace(", ", "-").replace(" ", "-"))
    metrics = summary["best"]["metrics"]
    return {
        "test_rmse": metrics["test_rmse"],
        "test_accuracy": metrics["test_accuracy"],
        "train_rmse": metrics["train_rmse"],
        "seconds": time.perf_counter() - began,
    }


def table(results: dict[str, dict]) -> str:
    lines = [
        "| mode | test RMSE | SVM test accuracy | train RMSE | seconds | "
        "seed's RMSE | seed's accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        seed = SEED_REPORTED.get(label)
        reported = f"{seed[0]:.4g} | {100 * seed[1]:.2f}%" if seed else "- | -"
        lines.append(
            f"| {label} | {r['test_rmse']:.4f} | {100 * r['test_accuracy']:.2f}% | "
            f"{r['train_rmse']:.4f} | {r['seconds']:.0f} | {reported} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="G=8, K=10: about a minute")
    parser.add_argument("--generations", type=int, default=None, help="G per layer")
    parser.add_argument("--steps", type=int, default=None, help="K per generation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.generations = args.generations or (8 if args.quick else 40)
    args.steps = args.steps or (10 if args.quick else 100)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        for label in args.modes:
            results[label] = run(label, args, folder)
            print(f"{label}: {results[label]}", file=sys.stderr, flush=True)
    print(
        f"G = {args.generations} generations per layer, K = {args.steps} steps per "
        f"generation ({args.generations * args.steps} gradient steps per layer), seed {args.seed}"
    )
    print(table(results))


if __name__ == "__main__":
    main()
