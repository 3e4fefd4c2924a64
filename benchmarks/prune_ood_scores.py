"""Which OOD score ranks OOD inputs right, for the heads `prune` trains: the evidence
behind `task.ood_score`'s default, and why ODIN inverts on MNIST-backbone setups.

Setups of BENCHMARKS.md's prune tables: evotune's small ResNet pretrained on MNIST (64
pooled features), in-distribution scikit-learn digits with FSDD spectrograms as OOD, and
the reverse; plus MNIST itself as OOD (the backbone's own source data). For each, the
seed's 512-unit head is trained on all features (the full head) and on random feature
masks (the genomes a search starts from, kept fraction ~ U(0, 1)); every score's test
AUROC is reported (mean over the masks, and the full head's). The diagnosis: the mean
feature norm and the mean max-logit / logit range of in-distribution vs OOD test inputs.

    python benchmarks/prune_ood_scores.py [--masks 20] [--epochs 200] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import MNIST, fsdd_data, mnist_backbone, require  # noqa: E402

SCORES = ("odin", "msp", "energy", "mahalanobis", "knn")
DIGITS = {"source": "digits", "split": {"val_fraction": 0.2, "test_fraction": 0.2}}
MNIST_OOD = {"source": "idx", "path": str(MNIST), "max_per_class": 40}


def setups() -> dict[str, tuple[dict, dict]]:
    require(MNIST)
    return {
        "digits vs fsdd": (DIGITS, fsdd_data()),
        "fsdd vs digits": (fsdd_data(), DIGITS),
        "digits vs mnist": (DIGITS, MNIST_OOD),
        "fsdd vs mnist": (fsdd_data(), MNIST_OOD),
    }


def build(ind: dict, ood: dict, epochs: int):
    from evotune.config import resolve
    from evotune.tasks.base import build_task

    raw = {
        "task": {"name": "prune", "ood": [ood], "input_range": [0, 1], "ood_scores": list(SCORES)},
        "data": ind,
        "model": {
            "backbone": f"file:{mnist_backbone()}",
            "channels": "keep",
            "normalize": "none",
        },
        "fitness": {"epochs": epochs, "device": "cpu", "threads": 2},
        "output": {"report": False},
    }
    return build_task(resolve(raw))


def measure(task, masks: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    genomes = np.concatenate([np.ones((1, task.space.n_genes)), task.space.sample(masks, rng)])
    genomes = genomes[~task.empty(genomes)].astype(np.uint8)
    heads = task.train(genomes, np.arange(len(genomes)) + 100)
    f = task.feats
    rows = task.score(heads, f.test_x, f.test_y, f.ood_test)
    key = {s: ("auroc" if s == task.options.ood_score else f"auroc_{s}") for s in SCORES}
    from evotune.train.popheads import predict

    logit_in, logit_out = predict(heads[:1], f.test_x)[0], predict(heads[:1], f.ood_test)[0]
    return {
        "full": {s: rows[0][key[s]] for s in SCORES} | {"accuracy": rows[0]["accuracy"]},
        "masks": {s: float(np.mean([r[key[s]] for r in rows[1:]])) for s in SCORES},
        "masks_accuracy": float(np.mean([r["accuracy"] for r in rows[1:]])),
        "norm_in": float(f.test_x.norm(dim=1).mean()),
        "norm_out": float(f.ood_test.norm(dim=1).mean()),
        "maxlogit_in": float(logit_in.max(dim=1).values.mean()),
        "maxlogit_out": float(logit_out.max(dim=1).values.mean()),
        "range_in": float((logit_in.max(dim=1).values - logit_in.min(dim=1).values).mean()),
        "range_out": float((logit_out.max(dim=1).values - logit_out.min(dim=1).values).mean()),
        "n_masks": len(rows) - 1,
    }


def table(results: dict[str, dict], command: str, seconds: float) -> str:
    head = "| setup | heads | accuracy | " + " | ".join(SCORES) + " |"
    lines = [head, "|" + "---|" * (3 + len(SCORES))]
    for name, r in results.items():
        full = " | ".join(f"{r['full'][s]:.3f}" for s in SCORES)
        masks = " | ".join(f"{r['masks'][s]:.3f}" for s in SCORES)
        lines.append(f"| {name} | full head | {r['full']['accuracy']:.3f} | {full} |")
        lines.append(
            f"| {name} | {r['n_masks']} random masks (mean) | {r['masks_accuracy']:.3f} | {masks} |"
        )
    lines += ["", "| setup | feature norm in / OOD | max logit in / OOD | logit range in / OOD |"]
    lines.append("|---|---|---|---|")
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['norm_in']:.2f} / {r['norm_out']:.2f} | {r['maxlogit_in']:.2f} / "
            f"{r['maxlogit_out']:.2f} | {r['range_in']:.2f} / {r['range_out']:.2f} |"
        )
    return f"`{command}` ({seconds:.0f} s, 2 torch threads; test AUROC)\n\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--write", type=Path, help="append the table to this markdown file")
    args = parser.parse_args()
    torch.set_num_threads(2)
    began = time.perf_counter()
    results = {
        name: measure(build(i, o, args.epochs), args.masks) for name, (i, o) in setups().items()
    }
    command = "python benchmarks/prune_ood_scores.py" + " ".join(sys.argv[1:]).join(["", ""])
    text = table(results, command.strip(), time.perf_counter() - began)
    print(text)
    if args.write:
        with open(args.write, "a") as handle:
            handle.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
