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

`--backbone cifar-resnet56`: the seed's experiment on natural-image features. The CIFAR-10
ResNet-56 of examples/byo (python: backbone, its checkpoint; 64 pooled features, inputs
as the example: gray repeated to 3 channels, the data's own size); `--modes both
features` (`task.mode`); targets `mnist` (MNIST test set, few-shot: `--shots` training
images per class, 2,000 test images) and `fsdd` (spoken digits as log-mel images,
official split); OOD: the other two of {MNIST, FSDD, scikit-learn digits}. `--runs`
searches (seeds 0..runs-1) per setting, merged with `evotune aggregate`; the table is
the aggregated front's best-accuracy point (test accuracy, active fraction, test AUROC
of each recorded score) against the full head of each run, and the ensembles.

    python benchmarks/prune_quality.py --backbone cifar-resnet56 --target mnist \
        [--modes both features] [--objectives mahalanobis odin] [--runs 3] \
        [--evaluations 200] [--epochs 600] [--threads 1] [--keep DIR] [--write FILE]

With `--quick`: at most 2 runs x 60 evaluations, epoch cap 60. With `--keep DIR`, runs
(and aggregates) already finished there are reused, so a rerun prints the table; one
run (`--runs 1`) is its own front, not aggregated.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import MNIST, SHARED, fsdd_data, mnist_backbone, require  # noqa: E402

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


# --- the seed's experiment on natural-image features (--backbone cifar-resnet56) ---

RESNET56 = {
    "backbone": "python:examples/byo/cifar_resnet.py:resnet56",
    "weights": str(SHARED / "data" / "cifar10-resnet56" / "resnet56-4bfd9763.th"),
    "channels": "repeat",
}
SCORES = ["odin", "mahalanobis", "knn"]


def mnist_data(**overrides) -> dict:
    return {"source": "idx", "path": str(require(MNIST)), **overrides}


def cifar_config(args: argparse.Namespace, target: str, mode: str, objective: str, seed: int):
    if target == "mnist":
        # 10,000 images: 2,000 test, 1,600 validation, `shots` per class for training.
        split = {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0}
        data = mnist_data(max_per_class=args.shots, split=split)
        ood = [fsdd_data(), {"source": "digits"}]
    else:
        data = fsdd_data(**({"max_per_class": args.fsdd_shots} if args.fsdd_shots else {}))
        ood = [mnist_data(), {"source": "digits"}]
    search = {"preset": "seed", "seed": seed, "max_evaluations": args.evaluations}
    return {
        "task": {
            "name": "prune",
            "mode": mode,
            "ood": ood,
            "ood_score": objective,
            "ood_scores": [s for s in SCORES if s != objective],
            "baselines": ["full"],
        },
        "data": data,
        "model": dict(RESNET56),
        "search": search,
        "fitness": {"epochs": args.epochs, "device": "cpu", "threads": args.threads},
        "output": {"report": True},
    }


def cifar_setting(args, target: str, mode: str, objective: str, root: Path) -> dict:
    """`args.runs` searches and their aggregate; returns what the table needs."""
    from evotune.config import resolve
    from evotune.prune.aggregate import aggregate
    from evotune.runner import start

    base = root / f"{target}-{mode}-{objective}"
    dirs, summaries, seconds = [], [], []
    for seed in range(args.runs):
        out = base / f"seed{seed}"
        done = out / "summary.json"
        if args.keep and done.is_file():  # finished earlier under --keep: reuse it
            summaries.append(json.loads(done.read_text()))
            seconds.append(summaries[-1].get("wall_seconds", float("nan")))
        else:
            began = time.perf_counter()
            config = cifar_config(args, target, mode, objective, seed)
            summaries.append(start(resolve(config), out))
            seconds.append(time.perf_counter() - began)
        dirs.append(out)
        print(f"{out}: {seconds[-1]:.0f} s", file=sys.stderr, flush=True)
    began = time.perf_counter()
    merged_path = base / "aggregate" / "summary.json"
    if len(dirs) == 1:  # one run is its own aggregate: its front, already analysed
        merged = json.loads((dirs[0] / "summary.json").read_text())
        merged["pareto"] = [{**p, "run_seed": merged["seed"]} for p in merged["pareto"]]
        analysis = json.loads((dirs[0] / "analysis.json").read_text())
        return {"runs": summaries, "merged": merged, "analysis": analysis, "seconds": [*seconds, 0]}
    if args.keep and merged_path.is_file() and (base / "aggregate" / "analysis.json").is_file():
        merged = json.loads(merged_path.read_text())
        seconds.append(float("nan"))
    else:
        merged = aggregate(dirs, base / "aggregate")
        seconds.append(time.perf_counter() - began)
    analysis = json.loads((base / "aggregate" / "analysis.json").read_text())
    return {"runs": summaries, "merged": merged, "analysis": analysis, "seconds": seconds}


def _auroc_cells(metrics: dict, objective: str, prefix: str) -> list[str]:
    cells = []
    for score in SCORES:
        key = f"{prefix}auroc" if score == objective else f"{prefix}auroc_{score}"
        value = metrics.get(key)
        cells.append("-" if value is None else f"{value:.3f}")
    return cells


def cifar_rows(target: str, mode: str, objective: str, result: dict) -> tuple[list, list, dict]:
    names = [o["name"] for o in result["merged"]["objectives"]]
    acc, act = names.index("accuracy"), names.index("active_fraction")
    front = result["merged"]["pareto"]
    best = max(front, key=lambda p: (p["fitness"][acc], -p["fitness"][act]))
    label = f"{target} · {mode} · {objective}"
    m = best["metrics"]
    rows = [
        f"| {label} | front best accuracy (seed {best['run_seed']}) | {m['accuracy']:.4f} "
        f"| {m['test_accuracy']:.4f} | {best['fitness'][act]:.3f} | "
        + " | ".join(_auroc_cells(m, objective, "test_"))
        + " |"
    ]
    fulls = []
    for s in result["runs"]:
        full = s["baselines"]["full"]
        fm = full["metrics"]
        fulls.append(fm.get("test_accuracy", float("nan")))
        rows.append(
            f"| {label} | full head (seed {s['seed']}) | {fm['accuracy']:.4f} "
            f"| {fm.get('test_accuracy', float('nan')):.4f} | 1.000 | "
            + " | ".join(_auroc_cells(fm, objective, "test_"))
            + " |"
        )
    # The 40 % question: the smallest front member whose test accuracy reaches the full
    # head's (the mean of the runs' full heads, and the worst of them).
    full_mean = sum(fulls) / len(fulls)
    reach = [p for p in front if p["metrics"].get("test_accuracy", 0) >= full_mean]
    smallest = min(reach, key=lambda p: p["fitness"][act]) if reach else None
    within = [p for p in front if p["fitness"][act] <= 0.4]
    best40 = max(within, key=lambda p: p["metrics"].get("test_accuracy", 0)) if within else None
    finding = {
        "label": label,
        "front": len(front),
        "full_mean": full_mean,
        "smallest_reaching": None
        if smallest is None
        else (smallest["fitness"][act], smallest["metrics"]["test_accuracy"]),
        "best_within_40": None
        if best40 is None
        else (best40["fitness"][act], best40["metrics"]["test_accuracy"]),
    }
    ens = []
    for section in result["analysis"]["sections"]:
        if section["title"].startswith("Ensembles"):
            ens.append((label, section["title"], section["table"]))
    return rows, ens, finding


def cifar_main(args: argparse.Namespace) -> None:
    targets = ["mnist", "fsdd"] if args.target == "both" else [args.target]
    lines, ensembles, findings, notes = [], [], [], []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for target in targets:
            for objective in args.objectives:
                for mode in args.modes:
                    result = cifar_setting(args, target, mode, objective, root)
                    rows, ens, finding = cifar_rows(target, mode, objective, result)
                    lines += rows
                    ensembles += ens
                    findings.append(finding)
                    runs = result["runs"]
                    notes.append(
                        f"{finding['label']}: {len(runs)} runs x "
                        f"{runs[0]['evaluations']} evaluations, fronts of "
                        + ", ".join(str(len(r["pareto"])) for r in runs)
                        + f", aggregated front of {finding['front']}; run wall times "
                        + ", ".join(f"{x:.0f}" for x in result["seconds"][:-1])
                        + f" s, aggregate {result['seconds'][-1]:.0f} s"
                    )
    total = time.perf_counter() - began
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = [
        f"`{' '.join(['python', *sys.argv])}` ({when}, "
        f"fitness.threads {args.threads}, {args.runs} runs x {args.evaluations} evaluations, "
        f"epoch cap {args.epochs}, {total:.0f} s in all)",
        "",
        "| target · mode · objective | point | val accuracy | test accuracy | active fraction "
        "| test AUROC odin | mahalanobis | knn |",
        "|---|---|---|---|---|---|---|---|",
        *lines,
        "",
        *[f"- {n}" for n in notes],
        "",
        "At most 40 % of the bits against the full head (mean test accuracy of the runs' "
        "full heads):",
        "",
    ]
    for f in findings:
        s, b = f["smallest_reaching"], f["best_within_40"]
        out.append(
            f"- {f['label']}: full head {f['full_mean']:.4f}; smallest front member reaching it: "
            + ("none" if s is None else f"active {s[0]:.3f}, test {s[1]:.4f}")
            + "; best front member with active <= 0.40: "
            + ("none" if b is None else f"active {b[0]:.3f}, test {b[1]:.4f}")
        )
    for label, title, table in ensembles:
        out += ["", f"{label}, {title.lower()} (aggregated front, test set):", ""]
        out.append("| " + " | ".join(table["headers"]) + " |")
        out.append("|" + "---|" * len(table["headers"]))
        for row in table["rows"]:
            out.append(
                "| "
                + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row)
                + " |"
            )
    print("\n".join(out))
    if args.write:
        with args.write.open("a") as handle:
            handle.write("\n" + "\n".join(out) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--target", choices=["digits", "fsdd", "mnist", "both"], default="both")
    parser.add_argument(
        "--backbone", choices=["mnist-small", "cifar-resnet56"], default="mnist-small"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=["both", "features", "neurons"], default=["both", "features"]
    )
    parser.add_argument("--objectives", nargs="+", choices=SCORES, default=["mahalanobis"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--evaluations", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=600)
    parser.add_argument("--shots", type=int, default=20, help="mnist: training images per class")
    parser.add_argument("--fsdd-shots", type=int, default=None, help="fsdd: cap per class")
    parser.add_argument("--threads", type=int, default=1, help="fitness.threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    parser.add_argument("--write", type=Path, help="append the results to this markdown file")
    args = parser.parse_args()
    if args.backbone == "cifar-resnet56":
        if args.target == "digits":
            parser.error("--backbone cifar-resnet56: --target mnist, fsdd or both")
        if args.quick:
            args.evaluations, args.epochs, args.runs = 60, 60, min(args.runs, 2)
        return cifar_main(args)
    if args.target == "mnist":
        parser.error("--target mnist needs --backbone cifar-resnet56")
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
