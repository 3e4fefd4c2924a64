"""The third seed's search on real data: MOEvoPruneDeepTL's NSGA-II (population 30,
200 evaluations, SGD lr 1e-3 Nesterov, batch 32, early stopping patience 10) pruning
the input features of a 512-unit head, three objectives (accuracy, active fraction,
ODIN AUROC).

Backbone: evotune's small ResNet pretrained on the MNIST test set (`evotune pretrain`,
cached; 64 pooled features). In-distribution: scikit-learn's digits (`digits`) or the
spoken digits (`fsdd`, log-mel, official split); OOD inputs: the other one, sized like
the validation and test sets. Reported: the front's best-accuracy point (its test
accuracy, active fraction), the best AUROC on the front, and the full unpruned head.

    python benchmarks/prune_quality.py [--quick] [--target digits|fsdd] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import fsdd_data, mnist_backbone  # noqa: E402

DIGITS = {"source": "digits", "split": {"val_fraction": 0.2, "test_fraction": 0.2}}


def config(target: str, backbone: Path, quick: bool, seed: int) -> dict:
    ind, ood = (DIGITS, fsdd_data()) if target == "digits" else (fsdd_data(), DIGITS)
    return {
        # The MNIST backbone saw images in [0, 1]; log-mel spectrograms are in dB.
        "task": {"name": "prune", "ood": [ood], "baselines": ["full"], "input_range": [0, 1]},
        "data": ind,
        "model": {"backbone": f"file:{backbone}", "channels": "keep", "normalize": "none"},
        "search": {"preset": "seed", "seed": seed, **({"max_evaluations": 60} if quick else {})},
        "fitness": {"epochs": 60 if quick else 600, "device": "cpu"},
        "output": {"report": True},
    }


def run(target: str, quick: bool, seed: int, out: Path) -> dict:
    from evotune.config import resolve
    from evotune.runner import start

    began = time.perf_counter()
    summary = start(resolve(config(target, mnist_backbone(), quick, seed)), out)
    summary["seconds"] = time.perf_counter() - began
    return summary


def rows(target: str, summary: dict) -> list[str]:
    front = summary["pareto"]
    best = max(front, key=lambda p: (p["fitness"][0], -p["fitness"][1]))
    full = summary["baselines"]["full"]
    best_auroc = max(front, key=lambda p: p["fitness"][2])
    m, fm = best["metrics"], full["metrics"]
    return [
        f"| {target} | front best accuracy | {best['fitness'][0]:.4f} | {m['test_accuracy']:.4f} "
        f"| {best['fitness'][1]:.3f} | {best['fitness'][2]:.4f} | {m['test_auroc']:.4f} |",
        f"| {target} | front best AUROC | {best_auroc['fitness'][0]:.4f} "
        f"| {best_auroc['metrics']['test_accuracy']:.4f} | {best_auroc['fitness'][1]:.3f} "
        f"| {best_auroc['fitness'][2]:.4f} | {best_auroc['metrics']['test_auroc']:.4f} |",
        f"| {target} | full head (all 64) | {full['fitness'][0]:.4f} | {fm['test_accuracy']:.4f} "
        f"| 1.000 | {full['fitness'][2]:.4f} | {fm['test_auroc']:.4f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--target", choices=["digits", "fsdd", "both"], default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    parser.add_argument("--write", type=Path, help="append the results to this markdown file")
    args = parser.parse_args()
    targets = ["digits", "fsdd"] if args.target == "both" else [args.target]
    lines, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for target in targets:
            summary = run(target, args.quick, args.seed, root / f"prune-{target}")
            lines += rows(target, summary)
            notes.append(
                f"{target}: {summary['evaluations']} evaluations, front of "
                f"{len(summary['pareto'])}, {summary['seconds']:.0f} s"
            )
    command = "python benchmarks/prune_quality.py" + (" --quick" if args.quick else "")
    out = [
        "## Prune: MOEvoPruneDeepTL's search on real data",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d')}, seed {args.seed})",
        "",
        "| in-distribution | point | val accuracy | test accuracy | active fraction "
        "| val AUROC | test AUROC |",
        "|---|---|---|---|---|---|---|",
        *lines,
        "",
        *[f"- {n}" for n in notes],
    ]
    print("\n".join(out))
    if args.write:
        with args.write.open("a") as handle:
            handle.write("\n" + "\n".join(out) + "\n")


if __name__ == "__main__":
    main()
