"""Training a generation of `prune` heads: the anchor's way, one at a time, and batched.

One generation of the seed's search: 30 genomes with ones-fraction ~ U(0, 1) over the
2048 ResNet50 features, heads 2048 -> 512 (ReLU, no bias) -> 10, SGD lr 1e-3, momentum
0.9, Nesterov, batch 32, a fixed number of epochs (no early stopping, so every method
does the same work). Data: scikit-learn's digits through an untrained ResNet50 at
32 x 32 (speed does not depend on the weights).

  (1) the anchor's method: features re-extracted through the backbone for every
      evaluation, then one masked full-size head trained (nn.Module, autograd,
      torch.optim.SGD), as MOEvoPruneDeepTL's code does;
  (2) the same head one at a time on cached features, with torch's default threads
      and with one;
  (2b) evotune's trainer given one genome at a time (its active-rows layout, no batching);
  (3) evotune: the whole generation in one `train_heads` call, with the default threads
      and with one; each compared with (2) on as many threads.

(1) and (2) are timed on `--sample` genomes and scaled to 30 (their cost does not depend
on the mask); (2b) and (3) train all 30. Achieved GFLOP/s count the matmul work of the
active rows (forward and weight gradient of both layers, input gradient of the second)
against the float32 matmul peak measured here.

    python benchmarks/prune_speed.py [--quick] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from evotune.data import DataConfig, load_data
from evotune.models import ModelConfig, build_model
from evotune.train.features import extract_features
from evotune.train.headref import train_reference
from evotune.train.maskedhead import HeadSettings
from evotune.train.popheads import members_from_masks, train_heads

P, D, H = 30, 2048, 512


def matmul_peak(threads: int | None = None, n: int = 2048, repeats: int = 8) -> float:
    """Best float32 GFLOP/s of an n x n x n matmul (torch's default threads, or `threads`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    try:
        torch.mm(a, b, out=c)
        best = min(_seconds(lambda: torch.mm(a, b, out=c)) for _ in range(repeats))
    finally:
        torch.set_num_threads(before)
    return 2 * n**3 / best / 1e9


def _seconds(call) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def useful_flops(members, n: int, epochs: int, classes: int) -> float:
    per_example = sum(
        4 * len(m.inputs) * len(m.hidden) + 6 * len(m.hidden) * classes for m in members
    )
    return float(per_example) * n * epochs


def population(seed: int = 0):
    rng = np.random.default_rng(seed)
    features = (rng.random((P, D)) < rng.random((P, 1))).astype(np.uint8)
    return members_from_masks(features, np.ones((P, H), np.uint8), np.arange(P) + 1000)


def one_at_a_time(members, x, y, classes, settings, threads: int | None) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return _seconds(lambda: [train_reference(m, x, y, classes, settings) for m in members])
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--sample", type=int, help="genomes timed for (1) and (2)")
    parser.add_argument("--write", type=Path, help="append the results to this markdown file")
    args = parser.parse_args()
    epochs = args.epochs or (2 if args.quick else 6)
    sample = args.sample or (4 if args.quick else 8)

    data = load_data(DataConfig(source="digits", split={"val_fraction": 0.2}))
    torch.manual_seed(0)
    net = build_model(
        ModelConfig(backbone="torchvision:resnet50"), data.input_shape, 10, seed=0
    ).eval()
    images, y = data.train.x, data.train.y
    extract = lambda: extract_features(net, images, torch.device("cpu"))  # noqa: E731
    x = extract()
    extraction = min(_seconds(extract) for _ in range(2))
    members = population()
    settings = HeadSettings(hidden=H, epochs=epochs, patience=None)
    peaks, peaks1 = [matmul_peak()], [matmul_peak(1)]

    # The machine is shared: every time is the best of repeats of the same work, and the
    # peaks are the best of before and after it.
    batched = min(_seconds(lambda: train_heads(members, x, y, settings, 10)) for _ in range(3))
    one_core = dataclasses.replace(settings, threads=1)
    batched1 = min(_seconds(lambda: train_heads(members, x, y, one_core, 10)) for _ in range(3))
    peaks.append(matmul_peak())
    peaks1.append(matmul_peak(1))
    peak, peak1 = max(peaks), max(peaks1)
    alone = _seconds(lambda: [train_heads([m], x, y, settings, n_classes=10) for m in members])
    # The plain way with torch's default threads and with one, timed genome by genome on
    # `sample` genomes (its cost does not depend on the mask), the best time scaled to 30.
    cached = {
        t: P * min(one_at_a_time([m], x, y, 10, settings, t) for m in members[:sample])
        for t in (None, 1)
    }
    anchor = min(cached.values()) + extraction * P
    flops = useful_flops(members, len(x), epochs, 10)
    dense = float(P) * len(x) * epochs * (4 * D * H + 6 * H * 10)  # full 2048-row heads
    check = _check(members[:2], x, y, settings)
    lines = report(args, locals())
    print("\n".join(lines))
    if args.write:
        with args.write.open("a") as handle:
            handle.write("\n" + "\n".join(lines) + "\n")


def _check(members, x, y, settings) -> float:
    """Difference between (3) and the plain nn.Module training after one epoch: the
    largest over members of |W1 - W1_plain| / |W1_plain| (Frobenius norms)."""
    settings = dataclasses.replace(settings, epochs=1)
    batched = train_heads(members, x, y, settings, n_classes=10)
    worst = 0.0
    for m, head in zip(members, batched):
        plain = train_reference(m, x, y, 10, settings)[1]
        worst = max(worst, float((plain.w1 - head.w1).norm() / plain.w1.norm()))
    return worst


def report(args, v: dict) -> list[str]:
    mean_fraction = statistics.mean(len(m.inputs) / D for m in v["members"])
    threads = torch.get_num_threads()
    rows = [  # name, threads, seconds, the (2) it is compared with
        ("(1) anchor: re-extract + one head at a time", "best", v["anchor"], None),
        ("(2) one head at a time, cached features", threads, v["cached"][None], None),
        ("(2) one head at a time, cached features", 1, v["cached"][1], None),
        ("(2b) evotune trainer, one genome per call", threads, v["alone"], v["cached"][None]),
        ("(3) evotune, whole generation batched", threads, v["batched"], v["cached"][None]),
        ("(3) evotune, whole generation batched", 1, v["batched1"], v["cached"][1]),
    ]
    command = "python benchmarks/prune_speed.py" + (" --quick" if args.quick else "")
    out = [
        "## Prune: one generation of heads, batched vs one at a time",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d')}, {threads} threads)",
        "",
        f"30 genomes (mean active fraction {mean_fraction:.2f}) x {len(v['x'])} training "
        f"examples x {v['epochs']} epochs, 2048 -> 512 -> 10, batch 32. Feature extraction "
        f"(ResNet50, untrained, digits at 32 x 32): {v['extraction']:.2f} s per evaluation.",
        "",
        "| method | threads | seconds | vs (1) | vs (2) on as many threads |",
        "|---|---|---|---|---|",
    ]
    for name, n_threads, seconds, plain in rows:
        versus = "" if plain is None else f"{plain / seconds:.1f}x"
        out.append(
            f"| {name} | {n_threads} | {seconds:.2f} | {v['anchor'] / seconds:.1f}x | {versus} |"
        )
    gflops, gflops1 = v["flops"] / v["batched"] / 1e9, v["flops"] / v["batched1"] / 1e9
    out += [
        "",
        f"- (2): the best per-genome time of {v['sample']} genomes, scaled to 30.",
        f"- float32 matmul peak (2048^3, best of before and after (3)): {v['peak']:.0f} "
        f"GFLOP/s with {threads} threads, {v['peak1']:.0f} GFLOP/s on one.",
        f"- (3) achieved {gflops:.0f} GFLOP/s of useful matmul work (active rows only), "
        f"{100 * gflops / v['peak']:.0f}% of the {threads}-thread peak; on one core "
        f"{gflops1:.0f} GFLOP/s, {100 * gflops1 / v['peak1']:.0f}% of one core's peak. "
        f"Counting the full 2048-row heads it replaces: {v['dense'] / v['batched'] / 1e9:.0f} "
        "GFLOP/s.",
        f"- (3) vs plain nn.Module training, one epoch: |W1 - W1_plain| / |W1_plain| <= "
        f"{v['check']:.1e} (float rounding; a hidden unit near its ReLU kink can flip).",
    ]
    return out


if __name__ == "__main__":
    sys.exit(main())
