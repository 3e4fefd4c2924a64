"""The first seed's claim on real data: GA layer selection vs full fine-tuning, head only,
last-k, surgical, Auto-RGN and random masks, test accuracy mean +- std over seeds.

Backbones (`--backbone`): `mnist`, evotune's small ResNet pretrained on the MNIST test
set (`evotune pretrain`); `resnet56`, the real CIFAR-10-pretrained ResNet-56 of
../shared/data/cifar10-resnet56, brought as a user's own code
(`examples/byo/cifar_resnet.py`, at block granularity: 27 searchable genes).
Targets: (a) spoken digits (FSDD, log-mel, official split: recordings 0-4 are the test
set, so no speaker's test recordings are seen in training), (b) scikit-learn's digits,
(c) with `resnet56`, MNIST few-shot (20 training images per class, 2,100 test images).

    python benchmarks/layers_quality.py [--quick] [--seeds 3] [--search seed|default]
                                        [--schedule full|successive_halving]
                                        [--backbone mnist|resnet56]
                                        [--targets fsdd digits mnist] [--out DIR]
                                        [--write BENCHMARKS.md]

`--backbone resnet56` is the equal-wall-time comparison of issue 15: evotune's default
search (default GA, successive halving) with every baseline (random masks under the
search's schedule and at the full budget, both given the search's wall time), then the
seed preset (seed GA, full schedule) given the same wall time (`max_minutes`); the
fixed baselines (full, head, last-k, surgical, Auto-RGN) train each candidate once for
the full budget. Inputs are 16 x 16 (FSDD: 32 mel bands x 16 frames) to fit 2 cores.

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
from common import MNIST, SHARED, fsdd_data, mnist_backbone, require  # noqa: E402

METHODS = ("search", "full", "head", "last_k", "random", "surgical", "auto_rgn")
# --backbone resnet56: the default search, the seed preset's run, and every baseline
R56_METHODS = ("search", "seed", "random", "random_full", "surgical", "last_k", "auto_rgn",
               "full", "head")  # fmt: skip
R56_BUDGET = {"population": 10, "generations": 6, "epochs": 4, "fsdd_per_class": 20}
R56_MODEL = {
    "backbone": "python:examples/byo/cifar_resnet.py:resnet56",
    "weights": "WEIGHTS",  # filled in from the shared folder
    "granularity": "block",
    "channels": "repeat",
    "normalize": "imagenet",
}
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
    compute = search_compute(out)
    rows = {"search": summary["best"], **summary["baselines"]}
    return {
        name: (
            rows[name]["metrics"]["test_accuracy"],
            rows[name]["metrics"]["trainable_params"],
            compute if name == "search" else
            (rows[name].get("epochs_trained", 0), rows[name].get("seconds", 0.0)),
        )
        for name in METHODS
    }  # fmt: skip


def r56_targets(budget: dict) -> dict[str, dict]:
    small = {"resize": [16, 16]}  # model keys per target: 16 x 16 inputs
    return {
        "fsdd": (
            fsdd_data(
                max_per_class=budget["fsdd_per_class"],
                audio={**fsdd_data()["audio"], "n_mels": 32, "hop_length": 512},
            ),
            {},
        ),
        "mnist": (
            {
                "source": "idx",
                "path": str(require(MNIST)),
                "max_per_class": 250,  # 20 train, 10 val, 220 test per class
                "split": {"val_fraction": 0.04, "test_fraction": 0.88},
            },
            small,
        ),
        "digits": (
            {
                "source": "digits",
                "max_per_class": 10,
                "split": {"val_fraction": 0.3, "test_fraction": 0.3},
            },
            small,
        ),
    }


def r56_default(data: dict, model: dict, seed: int, budget: dict) -> dict:
    """The config of evotune's default search (default GA, halving) on the ResNet-56."""
    weights = require(SHARED / "data" / "cifar10-resnet56" / "resnet56-4bfd9763.th")
    fitness = {"epochs": budget["epochs"], "batch_size": 32, "lr": 1e-3, "device": "cpu",
               "threads": 1, "patience": None}  # fmt: skip
    return {
        "data": {**data, "split": {**data["split"], "seed": seed}},
        "model": {**R56_MODEL, "weights": str(weights), **model},
        "output": {"report": False},
        "task": {"name": "layers", "frozen_prefix": 2, "baselines": list(R56_METHODS[2:])},
        "search": {k: budget[k] for k in ("population", "generations")} | {"seed": seed},
        "fitness": fitness | {"schedule": "successive_halving", "min_epochs": 1, "eta": 2},
    }


def full_schedule(fitness: dict) -> dict:
    """A fitness section without successive halving's keys (the full budget)."""
    return {k: v for k, v in fitness.items() if k not in ("schedule", "min_epochs", "eta")}


def run_r56_elites(data: dict, model: dict, seed: int, budget: dict, out: Path, k: int):
    """The default search with `repeat: elites` (k seeds per elite) and random masks
    given its wall time: (search, random) test accuracies and the search's compute."""
    config = r56_default(data, model, seed, budget)
    config["task"]["baselines"] = ["random"]
    config["fitness"] |= {"repeats": k, "repeat": "elites"}
    summary = finished(out, ["random"]) or run_or_resume(config, out)
    return {
        "search": summary["best"]["metrics"]["test_accuracy"],
        "random": summary["baselines"]["random"]["metrics"]["test_accuracy"],
        "compute": search_compute(out),
        "random_compute": (
            summary["baselines"]["random"]["epochs_trained"],
            summary["baselines"]["random"]["seconds"],
        ),  # fmt: skip
    }


def run_r56_full_schedule(data: dict, model: dict, seed: int, budget: dict, out: Path):
    """The default GA without halving (every genome the full budget), given the wall time
    of the default search run in `out`'s parent (`default/`): isolates the schedule."""
    config = r56_default(data, model, seed, budget)
    config["fitness"] = full_schedule(config["fitness"])
    minutes = json.loads((out.parent / "default" / "summary.json").read_text())["wall_seconds"]
    config["task"]["baselines"] = []
    config["search"] = {"population": budget["population"], "seed": seed,
                        "max_minutes": minutes / 60}  # fmt: skip
    summary = finished(out, ()) or run_or_resume(config, out)
    return {"search": summary["best"]["metrics"]["test_accuracy"], "compute": search_compute(out)}


def run_r56(data: dict, model: dict, seed: int, budget: dict, out: Path) -> dict:
    """The default search with every baseline, then the seed preset for as long."""
    default = r56_default(data, model, seed, budget)
    base = {k: default[k] for k in ("data", "model", "output")}
    fitness = full_schedule(default["fitness"])
    summary = finished(out / "default", R56_METHODS[2:]) or run_or_resume(default, out / "default")
    minutes = summary["wall_seconds"] / 60
    seed_run = base | {
        "task": {"name": "layers", "frozen_prefix": 2, "baselines": []},
        "search": {
            "preset": "seed",
            "population": budget["population"],
            "seed": seed,
            "max_minutes": minutes,
        },  # fmt: skip
        "fitness": fitness,
    }
    preset = finished(out / "seed", ()) or run_or_resume(seed_run, out / "seed")
    rows = {"search": summary["best"], "seed": preset["best"], **summary["baselines"]}
    measured = noise(out / "default")
    computes = {"search": search_compute(out / "default"), "seed": search_compute(out / "seed")}
    for name, row in summary["baselines"].items():
        computes[name] = (row.get("epochs_trained", 0), row.get("seconds", 0.0))
    return {
        name: (
            rows[name]["metrics"]["test_accuracy"],
            rows[name]["metrics"]["trainable_params"],
            computes[name],
        )
        for name in R56_METHODS
    } | {"noise": measured}  # fmt: skip


def noise(out: Path, repeats: int = 3) -> dict:
    """Seed-to-seed noise of the search's best genome (its validation accuracy trained
    the full budget from `repeats` seeds) beside the spread of full-fidelity values
    across the search's evaluations: selection has signal where spread >> noise."""
    path = out / "noise.json"
    if path.is_file():
        return json.loads(path.read_text())
    import numpy as np

    from evotune.runner import load_resume_config
    from evotune.tasks.base import build_task
    from evotune.train.schedule import repeat_seeds

    config = load_resume_config(out)
    task = build_task(config)
    summary = json.loads((out / "summary.json").read_text())
    genome = task.space.from_json(summary["best"]["genome"])
    view = task.baseline_problem("full") or task  # the full budget, genome by genome
    seeds = repeat_seeds(config.search.seed, repeats)
    values = [view.evaluate(genome[None], np.array([s]))[0].fitness[0] for s in seeds]
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    full = [e["fitness"][0] for e in journal
            if not e.get("cached") and e["metrics"].get("fidelity", 1.0) == 1.0]  # fmt: skip
    result = {"noise": statistics.stdev(values), "spread": statistics.pstdev(full)}
    path.write_text(json.dumps(result))
    return result


def search_compute(out: Path) -> tuple[int, float]:
    """Epochs trained and seconds of a run's search evaluations (cached ones are free)."""
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    trained = [e for e in journal if not e.get("cached")]
    epochs = sum(
        int(e["metrics"].get("epochs_trained", e["metrics"].get("epochs", 0))) for e in trained
    )
    return epochs, sum(float(e.get("seconds") or 0) for e in trained)


def finished(out: Path, baselines=METHODS[1:]) -> dict | None:
    """The summary of a run in `out` that got through its baselines (and the test of its
    best), else None."""
    path = out / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    best = (summary.get("best") or {}).get("metrics") or {}
    done = set(baselines) <= set(summary.get("baselines") or {}) and "test_accuracy" in best
    return summary if done else None


def run_or_resume(config: dict, out: Path) -> dict:
    from evotune.config import resolve
    from evotune.runner import load_resume_config, resume, start

    if (out / "config.yaml").is_file():
        return resume(out, load_resume_config(out))
    shutil.rmtree(out, ignore_errors=True)  # killed before it wrote its config
    return start(resolve(config), out)


def table(name: str, results: list[dict], budget: str, methods=METHODS) -> list[str]:
    lines = [
        f"**{name}** ({budget})",
        "",
        "| method | test accuracy (mean +- std) | trainable params (mean) "
        "| epochs trained (mean) | seconds (mean) |",
        "|---|---|---|---|---|",
    ]
    for method in methods:
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


def header(arguments: str, note: str = "") -> list[str]:
    """The command that produced the tables, dated."""
    day = time.strftime("%Y-%m-%d")
    return [f"`python benchmarks/layers_quality.py{arguments}` ({day}, 2 CPU cores{note})", ""]


def chosen(items: dict, wanted: list[str] | None):
    """The (name, value) pairs of `items` named in `wanted` (all when None)."""
    return [(name, value) for name, value in items.items() if not wanted or name in wanted]


def finish(lines: list[str], began: float, write: Path | None) -> None:
    """Print the tables with the wall time; append them to `write` if given."""
    lines.append(f"Wall time: {(time.perf_counter() - began) / 60:.1f} min.")
    print("\n".join(lines))
    if write:
        with open(write, "a", encoding="utf-8") as handle:
            handle.write("\n" + "\n".join(lines) + "\n")


def main_r56(args: argparse.Namespace) -> None:
    budget = R56_BUDGET if not args.quick else {**R56_BUDGET, "generations": 2, "epochs": 2}
    began = time.perf_counter()
    label = (
        f"ResNet-56 (CIFAR-10), default GA + successive halving (min 1, eta 2), population "
        f"{budget['population']}, {budget['generations']} generations, {budget['epochs']} "
        "epochs; everything else at the search's wall time or full budget"
    )
    arguments = (
        f" --backbone resnet56{' --quick' if args.quick else ''} --seeds {args.seeds}"
        f"{' --targets ' + ' '.join(args.targets) if args.targets else ''}"
        f"{f' --elites {args.elites}' if args.elites else ''}"
        f"{' --full-schedule' if args.full_schedule else ''}"
    )
    lines = header(arguments, ", fitness.threads 1")
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.out or Path(scratch)
        for name, (data, model) in chosen(r56_targets(budget), args.targets):
            results = []
            for seed in range(args.seeds):
                out = folder / f"r56{'-quick' * args.quick}-{name}-{seed}"
                if args.elites:
                    out = out / f"elites{args.elites}"
                    results.append(run_r56_elites(data, model, seed, budget, out, args.elites))
                elif args.full_schedule:
                    results.append(run_r56_full_schedule(data, model, seed, budget, out / "full"))
                else:
                    results.append(run_r56(data, model, seed, budget, out))
                print(f"{name} seed {seed} done", file=sys.stderr)
            if args.elites:
                lines += elites_table(name, results, args.elites)
                continue
            if args.full_schedule:
                accuracy = [r["search"] for r in results]
                std = statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0
                lines += [
                    f"**{name}**, default GA with `schedule: full` for the default search's "
                    f"wall time: {statistics.mean(accuracy):.4f} +- {std:.4f} "
                    f"({statistics.mean(r['compute'][0] for r in results):.0f} epochs).",
                    "",
                ]
                continue
            lines += table(name, results, label, R56_METHODS)
            print("\n".join(table(name, results, label, R56_METHODS)), file=sys.stderr)
            lines += noise_lines(results)
    finish(lines, began, args.write)


def elites_table(name: str, results: list[dict], k: int) -> list[str]:
    def cell(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} +- {std:.4f}"

    search = [r["search"] for r in results]
    random = [r["random"] for r in results]
    return [
        f"**{name}**, default search with `repeat: elites`, `repeats: {k}`: search "
        f"{cell(search)} ({statistics.mean(r['compute'][0] for r in results):.0f} epochs, "
        f"{statistics.mean(r['compute'][1] for r in results):.0f} s); random masks at its "
        f"wall time {cell(random)} "
        f"({statistics.mean(r['random_compute'][0] for r in results):.0f} epochs).",
        "",
    ]


def noise_lines(results: list[dict]) -> list[str]:
    noise = [r["noise"]["noise"] for r in results]
    spread = [r["noise"]["spread"] for r in results]
    return [
        f"Seed-to-seed noise of the best genome's validation accuracy (3 seeds, full budget): "
        f"{statistics.mean(noise):.4f} (mean over runs); spread of the search's full-budget "
        f"values: {statistics.mean(spread):.4f}.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small budget, a few minutes")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--search", choices=sorted(SEARCHES), default="seed")
    parser.add_argument("--schedule", choices=["full", "successive_halving"], default="full")
    parser.add_argument("--targets", nargs="+", choices=["fsdd", "digits", "mnist"])
    parser.add_argument("--backbone", choices=["mnist", "resnet56"], default="mnist")
    parser.add_argument(
        "--full-schedule", action="store_true", help="resnet56: the default GA without "
        "halving, for the default search's wall time (run after the main table)"
    )  # fmt: skip
    parser.add_argument(
        "--elites", type=int, metavar="K", help="resnet56: the default search with "
        "fitness.repeat: elites, repeats K, against random masks at its wall time"
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="keep runs here; rerun to resume")
    parser.add_argument("--write", type=Path, help="append the tables to this file")
    args = parser.parse_args()
    if args.backbone == "resnet56":
        return main_r56(args)
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
    lines = header(
        f"{' --quick' if args.quick else ''} --seeds {args.seeds} --search {args.search} "
        f"--schedule {args.schedule}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.out or Path(scratch)
        for name, data in chosen(targets(budget), args.targets):
            results = []
            for seed in range(args.seeds):
                tag = "" if args.search == "seed" else f"{args.search}-"
                tag += "" if args.schedule == "full" else "sh-"
                out = folder / f"{mode}-{tag}{name}-{seed}"
                results.append(run_one(data, backbone, seed, search, budget, out, args.schedule))
                print(f"{name} seed {seed} done", file=sys.stderr)
            lines += table(name, results, label)
    finish(lines, began, args.write)


if __name__ == "__main__":
    main()
