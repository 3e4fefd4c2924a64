"""The first seed's claim on real data: GA layer selection vs full fine-tuning, head only,
last-k and random masks (same evaluation budget), test accuracy mean +- std over seeds.

Backbone: evotune's small ResNet pretrained on the MNIST test set (`evotune pretrain`).
Targets: (a) spoken digits (FSDD, log-mel, official split: recordings 0-4 are the test
set, so no speaker's test recordings are seen in training), (b) scikit-learn's digits.

    python benchmarks/layers_quality.py [--quick] [--seeds 3] [--search seed|default]
                                        [--schedule full|successive_halving]
                                        [--targets fsdd digits] [--out DIR]
                                        [--write BENCHMARKS.md]

`--search seed` (default) is the seed's GA (SEEDS.md §1: keep the top half, sequential
crossover, 4 % flips); `--search default` is evotune's default GA for binary genomes
(tournament, uniform crossover, 1/L bit flips, elitism 1), with fewer generations since
each makes population - 1 children instead of population / 2.

`--schedule successive_halving` trains search and baselines under successive halving
(`min_epochs: 1, eta: 2`; random masks then get the search's schedule too). Besides the
search, the table has full, head, last-k, random masks, surgical (one stage) and
Auto-RGN, with each method's compute (epochs trained, seconds).

With `--out`, runs are kept in DIR: a finished run is read back and an interrupted one
resumed (evotune's own resume), so a killed benchmark picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import fsdd_data, mnist_backbone  # noqa: E402

METHODS = ("search", "full", "head", "last_k", "random", "surgical", "auto_rgn")
BUDGETS = {  # mode -> search and training budget of every run
    "quick": {"population": 8, "elitism": 4, "generations": 3, "epochs": 4, "fsdd_per_class": 20},
    # The seed's population is 24; 16 keeps three seeds of both targets near 20 minutes.
    "full": {"population": 16, "elitism": 8, "generations": 6, "epochs": 6, "fsdd_per_class": 50},
}
SEARCHES = {  # --search -> the search section, from a budget
    "seed": lambda b: {
        "preset": "seed",
        **{k: b[k] for k in ("population", "elitism", "generations")},
    },
    # about as many children as the seed's GA: (population - 1) per generation, not half
    "default": lambda b: {
        "population": b["population"],
        "generations": (b["generations"] + 2) // 2,
    },
}


def targets(budget: dict) -> dict[str, dict]:
    return {
        # 32 mel bands x 16 frames: near MNIST's 28 x 28, and 4x cheaper than 64 x 32
        "fsdd": fsdd_data(
            max_per_class=budget["fsdd_per_class"],
            audio={**fsdd_data()["audio"], "n_mels": 32, "hop_length": 512},
        ),
        "digits": {
            "source": "digits",
            "max_per_class": 10,
            "split": {"val_fraction": 0.3, "test_fraction": 0.3},
        },
    }


def run_one(
    data: dict, backbone: Path, seed: int, search: dict, budget: dict, out: Path, schedule: str
) -> dict:
    fitness = {"epochs": budget["epochs"], "batch_size": 32, "lr": 2e-3, "device": "cpu"}
    if schedule == "successive_halving":
        fitness |= {"schedule": schedule, "min_epochs": 1, "eta": 2}
    config = {
        "task": {"name": "layers", "baselines": list(METHODS[1:])},
        "data": {**data, "split": {**data["split"], "seed": seed}},
        "model": {
            "backbone": f"file:{backbone}",
            "granularity": "leaf",
            "channels": "keep",
            "normalize": "none",
        },
        "search": {**search, "seed": seed},
        "fitness": fitness,
        "output": {"report": False},
    }
    summary = finished(out) or run_or_resume(config, out)
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    trained = [e for e in journal if not e.get("cached")]
    search_compute = (
        sum(
            int(e["metrics"].get("epochs_trained", e["metrics"].get("epochs", 0))) for e in trained
        ),
        sum(float(e.get("seconds") or 0) for e in trained),
    )
    rows = {"search": summary["best"], **summary["baselines"]}
    return {
        name: (
            rows[name]["metrics"]["test_accuracy"],
            rows[name]["metrics"]["trainable_params"],
            search_compute if name == "search" else
            (rows[name].get("epochs_trained", 0), rows[name].get("seconds", 0.0)),
        )
        for name in METHODS
    }  # fmt: skip


def finished(out: Path) -> dict | None:
    """The summary of a run in `out` that got through its baselines, else None."""
    path = out / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    return summary if set(METHODS[1:]) <= set(summary.get("baselines") or {}) else None


def run_or_resume(config: dict, out: Path) -> dict:
    from evotune.config import resolve
    from evotune.runner import load_resume_config, resume, start

    if (out / "config.yaml").is_file():
        return resume(out, load_resume_config(out))
    shutil.rmtree(out, ignore_errors=True)  # killed before it wrote its config
    return start(resolve(config), out)


def table(name: str, results: list[dict], budget: str) -> list[str]:
    lines = [
        f"**{name}** ({budget})",
        "",
        "| method | test accuracy (mean +- std) | trainable params (mean) "
        "| epochs trained (mean) | seconds (mean) |",
        "|---|---|---|---|---|",
    ]
    for method in METHODS:
        acc = [r[method][0] for r in results]
        params = [r[method][1] for r in results]
        epochs = [r[method][2][0] for r in results]
        seconds = [r[method][2][1] for r in results]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        lines.append(
            f"| {method} | {statistics.mean(acc):.4f} +- {std:.4f} | "
            f"{statistics.mean(params):,.0f} | {statistics.mean(epochs):.0f} | "
            f"{statistics.mean(seconds):.1f} |"
        )
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small budget, a few minutes")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--search", choices=sorted(SEARCHES), default="seed")
    parser.add_argument("--schedule", choices=["full", "successive_halving"], default="full")
    parser.add_argument("--targets", nargs="+", choices=["fsdd", "digits"], default=None)
    parser.add_argument("--out", type=Path, help="keep runs here; rerun to resume")
    parser.add_argument("--write", type=Path, help="append the tables to this file")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    budget = BUDGETS[mode]
    search = SEARCHES[args.search](budget)
    backbone = mnist_backbone()
    began = time.perf_counter()
    label = (
        f"{args.search} GA, population {search['population']}, {search['generations']} "
        f"generations, {budget['epochs']} epochs, {args.schedule} schedule, "
        f"FSDD {budget['fsdd_per_class']} per digit"
    )
    lines = [
        f"`python benchmarks/layers_quality.py{' --quick' if args.quick else ''} "
        f"--seeds {args.seeds} --search {args.search} --schedule {args.schedule}` "
        f"({time.strftime('%Y-%m-%d')}, 2 CPU cores)",
        "",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.out or Path(scratch)
        for name, data in targets(budget).items():
            if args.targets and name not in args.targets:
                continue
            results = []
            for seed in range(args.seeds):
                tag = "" if args.search == "seed" else f"{args.search}-"
                tag += "" if args.schedule == "full" else "sh-"
                out = folder / f"{mode}-{tag}{name}-{seed}"
                results.append(run_one(data, backbone, seed, search, budget, out, args.schedule))
                print(f"{name} seed {seed} done", file=sys.stderr)
            lines += table(name, results, label)
    lines.append(f"Wall time: {(time.perf_counter() - began) / 60:.1f} min.")
    print("\n".join(lines))
    if args.write:
        with open(args.write, "a", encoding="utf-8") as handle:
            handle.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
