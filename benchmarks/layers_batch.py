"""Population-batched `layers` fine-tuning (`task.batch`) against one genome at a time.

One generation of 16 random genomes of evotune's small ResNet (`builtin:small_resnet`,
leaf genes) on scikit-learn's digits (embedded, 8 x 8, 10 classes), trained both ways
in the same process, with the same seeds: wall time, genomes per second and the largest
difference of the journaled values (best validation loss and accuracy).

    python benchmarks/layers_batch.py [--genomes 16] [--epochs 3] [--threads 1] [--noise]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def make_task(batch: int, epochs: int, threads: int, batchnorm: str):
    from evotune.config import resolve

    config = resolve(
        {
            "task": {"name": "layers", "baselines": [], "batch": batch},
            "data": {"source": "digits", "split": {"val_fraction": 0.2, "test_fraction": 0.2}},
            "model": {
                "backbone": "builtin:small_resnet",
                "granularity": "leaf",
                "channels": "keep",
                "normalize": "none",
                "batchnorm": batchnorm,
            },
            "fitness": {
                "epochs": epochs,
                "batch_size": 32,
                "lr": 0.003,
                "device": "cpu",
                "threads": threads,
                "patience": None,
            },
        }
    )
    task = config.task_class.from_config(config)
    task.setup_process()
    return task


def timed(task, genomes, seeds) -> tuple[float, list]:
    began = time.perf_counter()
    out = task.evaluate(genomes, seeds)
    return time.perf_counter() - began, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--genomes", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batchnorm", default="frozen_eval")
    parser.add_argument(
        "--noise",
        action="store_true",
        help="also train one at a time with one more thread: the spread a rounding-level "
        "change alone gives, for scale",
    )
    args = parser.parse_args()
    one = make_task(1, args.epochs, args.threads, args.batchnorm)
    stacked = make_task(args.genomes, args.epochs, args.threads, args.batchnorm)
    assert stacked.batched is not None, stacked.template.notes
    genomes = one.space.sample(args.genomes, np.random.default_rng(0))
    seeds = np.arange(1000, 1000 + args.genomes)
    t_one, a = timed(one, genomes, seeds)
    t_stack, b = timed(stacked, genomes, seeds)
    row = {
        "genomes": args.genomes,
        "epochs": args.epochs,
        "threads": torch.get_num_threads(),
        "batchnorm": args.batchnorm,
        "one_at_a_time_s": round(t_one, 2),
        "batched_s": round(t_stack, 2),
        "speedup": round(t_one / t_stack, 2),
        "max_val_loss_rel_diff": float(f"{max_rel(a, b, 'val_loss'):.2e}"),
        "max_val_accuracy_diff": round(max_abs(a, b), 4),
        "mean_val_accuracy_diff": round(mean_abs(a, b), 4),
        "mean_val_accuracy": round(float(np.mean([x.metrics["val_accuracy"] for x in a])), 4),
    }
    if args.noise:
        other = make_task(1, args.epochs, args.threads + 1, args.batchnorm)
        c = other.evaluate(genomes, seeds)
        row["noise_threads"] = args.threads + 1
        row["noise_max_val_loss_rel_diff"] = float(f"{max_rel(a, c, 'val_loss'):.2e}")
        row["noise_max_val_accuracy_diff"] = round(max_abs(a, c), 4)
        row["noise_mean_val_accuracy_diff"] = round(mean_abs(a, c), 4)
    print(json.dumps(row))


def max_rel(a: list, b: list, key: str) -> float:
    return max(abs(x.metrics[key] - y.metrics[key]) / abs(x.metrics[key]) for x, y in zip(a, b))


def max_abs(a: list, b: list) -> float:
    return max(abs(x.metrics["val_accuracy"] - y.metrics["val_accuracy"]) for x, y in zip(a, b))


def mean_abs(a: list, b: list) -> float:
    diffs = [abs(x.metrics["val_accuracy"] - y.metrics["val_accuracy"]) for x, y in zip(a, b)]
    return float(np.mean(diffs))


if __name__ == "__main__":
    main()
