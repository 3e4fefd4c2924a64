"""Frozen-prefix cache: a whole seed-preset `layers` run with the cache, then the same
genomes (same seeds) evaluated without it, each in its own process (peak memory).

Backbone: evotune's small ResNet pretrained on the MNIST test set (`evotune pretrain`,
cached). Target: spoken digits (FSDD, log-mel), official split. As in the first seed's
runs, the first third of the genes are forced frozen.

    python benchmarks/layers_cache.py [--quick] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import fsdd_data, mnist_backbone, peak_rss_mb  # noqa: E402


def layers_config(backbone: Path, cache: bool, quick: bool) -> dict:
    return {
        "task": {"name": "layers", "frozen_prefix": 10, "baselines": []},
        "data": fsdd_data(),
        "model": {
            "backbone": f"file:{backbone}",
            "granularity": "leaf",
            "channels": "keep",
            "normalize": "none",
        },
        "search": {"preset": "seed", "generations": 2 if quick else 4, "seed": 0},
        "fitness": {
            "epochs": 2 if quick else 5,
            "batch_size": 64,
            "lr": 1e-3,
            "device": "cpu",
            "cache": cache,
        },
    }


def run_search(config: dict, out: Path) -> dict:
    from evotune.config import resolve
    from evotune.runner import start

    summary = start(resolve(config), out)
    return {
        "seconds": summary["wall_seconds"],
        "evaluations": summary["evaluations"],
        "peak_rss_mb": peak_rss_mb(),
    }


def replay(config: dict, run_dir: Path) -> dict:
    """Evaluate the run's genomes again, same seeds, in the same order."""
    from evotune.config import resolve
    from evotune.engine.problem import evaluation_seed

    resolved = resolve(config)
    task = resolved.task_class.from_config(resolved)
    lines = [json.loads(x) for x in (run_dir / "journal.jsonl").read_text().splitlines()]
    fresh = [e for e in lines if not e["cached"]]
    began = time.perf_counter()
    diffs = []
    for entry in fresh:
        genome = task.space.from_json(entry["genome"])
        seed = evaluation_seed(resolved.search.seed, entry["hash"])
        result = task.evaluate(genome[None, :], np.array([seed]))[0]
        diffs.append(abs(result.fitness[0] - entry["fitness"][0]))
    return {
        "seconds": time.perf_counter() - began,
        "evaluations": len(fresh),
        "max_fitness_diff": max(diffs),
        "peak_rss_mb": peak_rss_mb(),
    }


def child(mode: str, quick: bool, folder: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--folder", str(folder)]
        + (["--quick"] if quick else []),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", type=Path)
    parser.add_argument("--child", choices=["cached", "replay"])
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    backbone = mnist_backbone()
    if args.child:
        config = layers_config(backbone, args.child == "cached", args.quick)
        measure = run_search if args.child == "cached" else replay
        print(json.dumps(measure(config, args.folder / "run")))
        return
    with tempfile.TemporaryDirectory() as folder:
        cached = child("cached", args.quick, Path(folder))
        plain = child("replay", args.quick, Path(folder))
    report(cached, plain, args)


def report(cached: dict, plain: dict, args: argparse.Namespace) -> None:
    command = "python benchmarks/layers_cache.py" + (" --quick" if args.quick else "")
    rows = [
        f"`{command}` ({time.strftime('%Y-%m-%d')}, 2 CPU cores)",
        "",
        "| | evaluations | seconds | peak RSS MB |",
        "|---|---|---|---|",
        f"| with prefix cache (whole seed-preset run) | {cached['evaluations']} | "
        f"{cached['seconds']:.1f} | {cached['peak_rss_mb']:.0f} |",
        f"| same genomes, no cache | {plain['evaluations']} | {plain['seconds']:.1f} | "
        f"{plain['peak_rss_mb']:.0f} |",
        "",
        f"Speed-up: {plain['seconds'] / cached['seconds']:.2f}x; largest fitness difference "
        f"between the two: {plain['max_fitness_diff']:.2e}.",
    ]
    print("\n".join(rows))
    if args.write:
        with open(args.write, "a", encoding="utf-8") as handle:
            handle.write("\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
