"""Check evotune on a device, then time what a GPU should speed up; one markdown table.

(a) Smoke test: every task (`layers` in fp32 and mixed precision, `hparams`, `prune`,
    `weights`), `pretrain`, `export` and `predict` end to end at toy size on the chosen
    device. Any failure, or any failed evaluation, makes the exit status non-zero.
(b) Timings, each with the device's matmul peak measured in the same run:
    - `layers`: one generation of 16 genomes trained one at a time, in fp32 and bf16
      (and population-batched, `task.batch`, where this evotune has it). Backbone: the
      CIFAR-10 ResNet-56 (examples/byo/cifar_resnet.py through `python:`, with the
      checkpoint of ../shared/data/cifar10-resnet56) when ../shared exists, else
      torchvision resnet18 with `weights: none`; 32 x 32 RGB inputs (generated).
    - `prune`: one generation of 30 heads (2048 -> 512 -> 10, SGD, batch 32, fixed
      epochs), the plain module one at a time (train/headref.py) vs batched
      (train/popheads.py).
    - `weights`: the fitness of one generation (10 members) of the 784-500 tied layer
      (train/popnets.py), 1,024 examples.
(c) Prints the table (and writes it with --out).

Sizes (full mode, an H100): ResNet-56 is 0.25 GFLOP (125 M multiply-adds) per 32 x 32
forward pass, so a genome of 2 epochs over 1,024 training and 256 validation examples is
at most 1.7 TFLOP (every layer trained): 16 genomes x 2 precisions x 2 trainers are
about 110 TFLOP, seconds of matmul time; the rest is kernel launches (ResNet-56 at batch
64 is launch-bound: about 5 ms a step, 0.2 s a genome). The 30 heads are 30 x 64
steps x 3 epochs of at most 0.13 GFLOP: 0.8 TFLOP, and 5,760 optimizer steps one at a
time (about 1 ms each). Expected: 1-3 minutes in all, smoke test included.

    python benchmarks/gpu_check.py [--device auto|cpu|cuda|cuda:N] [--quick] [--out FILE]

`--quick`: toy sizes and `builtin:small_resnet` instead of ResNet-56; `--device cpu
--quick` runs in about 10 s of CPU time on 2 cores (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evotune.config import resolve
from evotune.tasks.layers import LayersOptions
from evotune.train.device import DTYPES, resolve_device
from evotune.train.headref import train_reference
from evotune.train.maskedhead import HeadSettings
from evotune.train.popheads import members_from_masks, train_heads
from evotune.train.popnets import population_rmse

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESNET56 = SHARED / "data" / "cifar10-resnet56" / "resnet56-4bfd9763.th"
BATCHED = "batch" in LayersOptions.model_fields  # population-batched `layers` (task.batch)


@dataclass(frozen=True)
class Sizes:
    genomes: int = 16  # layers: one generation
    examples: int = 1280  # layers: generated 32 x 32 images (train 80 %, val 20 %)
    epochs: int = 2
    heads: int = 30  # prune: one generation
    head_rows: int = 2048
    head_epochs: int = 3
    ae_batch: int = 1024  # weights: examples per fitness
    ae_members: int = 10
    peak_n: int = 8192  # matmul side for the peak (a GPU; 2048 on a CPU)


QUICK = Sizes(genomes=3, examples=48, epochs=1, heads=30, head_rows=64, head_epochs=1,
              ae_batch=128, peak_n=1024)  # fmt: skip


@dataclass
class Row:
    what: str
    precision: str
    seconds: float
    flops: float | None = None  # useful work, for the achieved rate
    peak: float | None = None  # GFLOP/s of the device's matmul in that precision
    base: float | None = None  # seconds of the row this one is compared with
    note: str = ""

    def cells(self) -> list[str]:
        rate = "" if self.flops is None else f"{self.flops / self.seconds / 1e9:,.1f}"
        share = ""
        if self.flops is not None and self.peak:
            share = f"{100 * self.flops / self.seconds / 1e9 / self.peak:.1f} %"
        speedup = "" if self.base is None else f"{self.base / self.seconds:.2f}x"
        seconds = "" if math.isnan(self.seconds) else f"{self.seconds:.3f}"
        return [self.what, self.precision, seconds, speedup, rate, share, self.note]


# -- (a) smoke test -------------------------------------------------------------------


def write_images(path: Path, n: int, classes: int = 10, side: int = 32, seed: int = 0) -> Path:
    """RGB images (N, 3, side, side) whose brightness pattern tells the class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.random((n, 3, side, side)).astype(np.float32) * 0.5
    rows = np.arange(side) * classes // side
    x += 0.5 * (rows[None, None, :, None] == y[:, None, None, None])
    np.savez(path, x=x, y=y)
    return path


def npz(path: Path, **split) -> dict:
    return {"source": "npz", "path": str(path), "layout": "nchw", "split": split}


def smoke_configs(data: Path, small: Path, device: str) -> dict[str, dict]:
    model = {"backbone": "builtin:small_cnn", "channels": "keep", "normalize": "none"}
    search = {"population": 4, "generations": 2, "seed": 0}
    fitness = {"epochs": 1, "batch_size": 16, "device": device}
    split = {"val_fraction": 0.25, "test_fraction": 0.25}
    layers = {
        "task": {"name": "layers", "baselines": ["head"]},
        "data": npz(data, **split),
        "model": model,
        "search": search,
        "fitness": fitness,
        "output": {"report": False},
    }
    mixed = "fp16" if torch.device(device).type == "cuda" else "bf16"
    out = {
        "layers": layers,
        f"layers {mixed}": {**layers, "fitness": {**fitness, "precision": mixed}},
        "hparams": {
            **layers,
            "task": {"name": "hparams"},
            "fitness": {**fitness, "precision": "bf16" if mixed == "bf16" else "fp32"},
        },
        "prune": {
            **layers,
            "task": {"name": "prune", "objectives": ["accuracy", "active_fraction"]},
            "fitness": {"hidden": 16, "epochs": 3, "batch_size": 8, "device": device},
        },
        "weights": {
            "task": {"name": "weights", "sizes": [64, 24, 8]},
            "data": {"source": "npz", "path": str(small), "split": {"test_fraction": 0.25}},
            "search": {"preset": "seed", "generations": 2},
            "fitness": {"examples": 64, "steps_per_generation": 3, "epochs": 1, "device": device},
            "output": {"report": False},
        },
    }
    return out


def smoke(device: str, folder: Path) -> list[str]:
    """Every task, pretrain, export and predict on `device`; the failures, as lines."""
    from evotune.export import export
    from evotune.predict import predict
    from evotune.pretrain import PretrainConfig, pretrain
    from evotune.runner import start

    data = write_images(folder / "images.npz", 96)
    small = folder / "small.npz"
    rng = np.random.default_rng(0)
    np.savez(small, x=rng.random((64, 8, 8)).astype(np.float32), y=np.arange(64) % 4)
    failures = []

    def check(name: str, call: Callable[[], object]) -> None:
        began = time.perf_counter()
        try:
            call()
            print(f"  ok   {name} ({time.perf_counter() - began:.1f} s)", file=sys.stderr)
        except Exception as err:  # noqa: BLE001 - reported, and the exit status says it
            failures.append(f"{name}: {type(err).__name__}: {err}")
            print(f"  FAIL {name}\n{traceback.format_exc()}", file=sys.stderr)

    for name, raw in smoke_configs(data, small, device).items():
        run_dir = folder / name.replace(" ", "-")
        check(name, lambda raw=raw, run_dir=run_dir: _run(start, resolve(raw), run_dir))
    model = folder / "layers.safetensors"
    check("export", lambda: export(folder / "layers", model))
    check("predict", lambda: _predict(predict, model, data, device))
    config = PretrainConfig.model_validate(
        {
            "data": npz(data, val_fraction=0.25),
            "model": smoke_configs(data, small, device)["layers"]["model"],
            "pretrain": {"epochs": 1, "device": device, "out": str(folder / "pre.safetensors")},
        }
    )
    check("pretrain", lambda: pretrain(config))
    return failures


def _run(start: Callable, config, run_dir: Path) -> None:
    start(config, run_dir)
    errors = [
        json.loads(line)["error"]
        for path in run_dir.rglob("journal.jsonl")
        for line in path.read_text().splitlines()
        if "error" in json.loads(line)
    ]
    if errors:
        raise RuntimeError(f"{len(errors)} failed evaluations, the first: {errors[0]}")


def _predict(predict: Callable, model: Path, data: Path, device: str) -> None:
    result = predict(model, {"source": "npz", "path": str(data), "layout": "nchw"}, device=device)
    if not result.rows:
        raise RuntimeError("no predictions")


# -- (b) timings ----------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, call: Callable[[], object]) -> tuple[float, object]:
    sync(device)
    began = time.perf_counter()
    out = call()
    sync(device)
    return time.perf_counter() - began, out


def matmul_peak(device: torch.device, precision: str, n: int, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n x n matmul on `device` in `precision`."""
    dtype = DTYPES[precision] or torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    c = torch.mm(a, b)
    best = min(timed(device, lambda: torch.mm(a, b, out=c))[0] for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def backbone(quick: bool) -> tuple[dict, str]:
    """ResNet-56 from ../shared, else an untrained resnet18; --quick: a small builtin
    ResNet, so that the test costs seconds and needs nothing outside the repository."""
    if quick:
        return {"backbone": "builtin:small_resnet"}, "builtin small_resnet (quick)"
    if RESNET56.exists():
        model = {
            "backbone": f"python:{ROOT / 'examples/byo/cifar_resnet.py'}:resnet56",
            "weights": str(RESNET56),
            "granularity": "block",
        }
        return model, "ResNet-56 (CIFAR-10)"
    return {"backbone": "torchvision:resnet18", "weights": "none"}, "resnet18 (untrained)"


def layers_generation(
    device: torch.device, precision: str, data: Path, sizes: Sizes, batch: int | None
) -> tuple[float, float, float]:
    """Seconds of one generation, mean best validation accuracy, nominal FLOPs."""
    model, _ = backbone(sizes == QUICK)
    fitness = {"epochs": sizes.epochs, "batch_size": 64, "lr": 1e-3, "patience": None}
    fitness |= {"device": str(device), "precision": precision}
    if device.type == "cpu":
        fitness["threads"] = torch.get_num_threads()
    task_section = {"name": "layers", "baselines": []}
    if batch is not None:
        task_section["batch"] = batch
    raw = {
        "task": task_section,
        "data": npz(data, val_fraction=0.2),
        "model": {**model, "channels": "keep", "normalize": "none"},
        "fitness": fitness,
    }
    config = resolve(raw)
    task = config.task_class.from_config(config)
    rng = np.random.default_rng(0)
    genomes = task.space.sample(sizes.genomes, rng)
    seeds = np.arange(sizes.genomes) + 100
    task.evaluate(genomes[:1], seeds[:1])  # warm-up: kernels chosen, caches filled
    seconds, results = timed(device, lambda: task.evaluate(genomes, seeds))
    accuracy = float(np.mean([r.metrics.get("val_accuracy", math.nan) for r in results]))
    flops = layers_flops(task, sizes)
    return seconds, accuracy, flops


def layers_flops(task, sizes: Sizes) -> float:
    """Nominal FLOPs of a generation: the whole net trained (3 forward passes per
    training example) and validated (1), every epoch; frozen prefixes make it less."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((1, *task.data.input_shape), device=task.device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        task.template(x)
    train, val = len(task.splits["train"]), len(task.splits["val"])
    return float(counter.get_total_flops()) * (3 * train + val) * sizes.epochs * sizes.genomes


def prune_generation(device: torch.device, sizes: Sizes) -> tuple[float, float, float]:
    """Seconds of 30 heads one at a time (the plain module) and batched; useful FLOPs."""
    d, h, c = 2048, 512, 10
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((sizes.head_rows, d), dtype=np.float32)).to(device)
    y = torch.from_numpy(np.arange(sizes.head_rows) % c).to(device)
    masks = (rng.random((sizes.heads, d)) < rng.random((sizes.heads, 1))).astype(np.uint8)
    members = members_from_masks(masks, np.ones((sizes.heads, h), np.uint8), np.arange(sizes.heads))
    # the reference builds its masks on the host; the batched trainer takes them where
    # the prune task puts them, on the device
    on_device = [type(m)(m.seed, m.inputs.to(device), m.hidden.to(device)) for m in members]
    settings = HeadSettings(hidden=h, epochs=sizes.head_epochs, patience=None)
    train_reference(members[0], x, y, c, settings)  # warm-up
    plain, _ = timed(device, lambda: [train_reference(m, x, y, c, settings) for m in members])
    train_heads(on_device[:2], x, y, settings, c)  # warm-up
    batched, _ = timed(device, lambda: train_heads(on_device, x, y, settings, c))
    per_example = sum(4 * len(m.inputs) * h + 6 * h * c for m in members)
    return plain, batched, float(per_example * sizes.head_rows * sizes.head_epochs)


def weights_generation(device: torch.device, sizes: Sizes) -> tuple[float, float]:
    """Seconds of one generation's fitness on the 784-500 tied layer; its FLOPs."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(sizes.ae_batch, 784, generator=gen).to(device)
    w = (torch.rand(sizes.ae_members, 500, 784, generator=gen) * 0.1 - 0.05).to(device)
    population_rmse(x, w, x)  # warm-up
    repeats = 5
    seconds, _ = timed(device, lambda: [population_rmse(x, w, x) for _ in range(repeats)])
    return seconds / repeats, 4.0 * sizes.ae_batch * 784 * 500 * sizes.ae_members


def timings(device: torch.device, sizes: Sizes, folder: Path) -> list[Row]:
    peak_n = sizes.peak_n if device.type == "cuda" else min(sizes.peak_n, 2048)
    peaks = {"fp32": matmul_peak(device, "fp32", peak_n)}
    peaks["bf16"] = matmul_peak(device, "bf16", peak_n)
    rows = [Row(f"matmul {peak_n}^3 (peak)", p, math.nan, note=f"{g:,.0f} GFLOP/s") for p, g in
            peaks.items()]  # fmt: skip
    data = write_images(folder / "layers.npz", sizes.examples)
    _, name = backbone(sizes == QUICK)
    what = f"layers: {sizes.genomes} genomes, {name}, {sizes.epochs} epochs"
    base = None
    for precision in ("fp32", "bf16"):
        seconds, accuracy, flops = layers_generation(device, precision, data, sizes, None)
        base = base or seconds
        note = f"one at a time (speed-up: vs fp32); mean val acc {accuracy:.3f}"
        rows.append(Row(what, precision, seconds, flops, peaks[precision], base, note))
        if BATCHED:
            b_seconds, b_accuracy, _ = layers_generation(
                device, precision, data, sizes, sizes.genomes
            )
            note = (
                f"population-batched, task.batch (vs one at a time); mean val acc {b_accuracy:.3f}"
            )
            rows.append(Row(what, precision, b_seconds, flops, peaks[precision], seconds, note))
    if not BATCHED:
        rows.append(
            Row(
                what,
                "-",
                math.nan,
                note="SLOT: population-batched (task.batch) not in this evotune yet",
            )  # fmt: skip
        )
    plain, batched, flops = prune_generation(device, sizes)
    what = f"prune: {sizes.heads} heads 2048-512-10, {sizes.head_rows} rows"
    what += f", {sizes.head_epochs} epochs"
    rows.append(Row(what, "fp32", plain, flops, peaks["fp32"], None, "one at a time (headref)"))
    rows.append(Row(what, "fp32", batched, flops, peaks["fp32"], plain, "batched (popheads)"))
    seconds, flops = weights_generation(device, sizes)
    what = f"weights: {sizes.ae_members} members, 784-500 tied layer, {sizes.ae_batch} examples"
    rows.append(Row(what, "fp32", seconds, flops, peaks["fp32"], None, "one generation's fitness"))
    return rows


# -- (c) the table --------------------------------------------------------------------


def table(rows: list[Row], device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    threads = torch.get_num_threads()
    head = ["measurement", "precision", "seconds", "speed-up", "GFLOP/s", "of peak", "note"]
    lines = [
        f"Device: {name} ({device}; torch {torch.__version__}, {threads} CPU threads)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    lines += [
        "",
        "GFLOP/s: useful work / wall time, against the matmul peak of the same precision "
        "measured in this run; layers: nominal work (every layer trained, 3 forward passes "
        "per training example and 1 per validation example; frozen prefixes do less).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--quick", action="store_true", help="toy sizes (CPU test)")
    parser.add_argument("--out", type=Path, help="also write the table there")
    parser.add_argument("--skip-smoke", action="store_true")
    args = parser.parse_args(argv)
    device = resolve_device(args.device, "--device")
    sizes = QUICK if args.quick else Sizes()
    with tempfile.TemporaryDirectory(prefix="evotune-gpu-check-") as tmp:
        folder = Path(tmp)
        failures = [] if args.skip_smoke else smoke(str(device), folder)
        rows = timings(device, sizes, folder)
    text = table(rows, device)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if failures:
        print(f"\n{len(failures)} smoke checks failed:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
