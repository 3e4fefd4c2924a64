"""Data larger than memory: a `layers` generation on an image folder streamed from disk,
against the same generation on a subset decoded into memory.

A generated folder of N PNGs at 224 x 224 (RGB, 10 classes; written once under /tmp),
torchvision `resnet18` with `weights: none`, one generation of 4 `layers` genomes for
1 epoch, the prefix cache off (so both paths run the whole network on every batch).
Each path runs in its own process under `/usr/bin/time -v` (peak RSS of the training
process); the child also samples the proportional set size (PSS) of itself and its
DataLoader workers together.

A full epoch of ResNet-18 at 224 x 224 over 16,000 training images is about 90 TFLOP
per genome: hours on 2 CPU cores. So each genome's epoch is bounded (`--train-images`,
`--val-images`): the epoch visits that many examples, drawn at random (fixed seed) from
the whole split, in the order training draws; both paths use the same bounds and the
same genomes, so images per second compare like with like.

    python benchmarks/data_scale.py [--images 20000] [--subset 1000] [--folder DIR]
        [--runs "memory:2:0 streamed:2:0 ..."] [--train-images 128] [--val-images 64]

Each run is PATH:TORCH_THREADS:WORKERS (PATH: streamed over the whole folder, or memory
on the subset); on 2 cores, torch threads plus workers above 2 oversubscribe.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

SIZE, CLASSES = 224, 10


# -- the folder -----------------------------------------------------------------------


def _write_image(job: tuple[Path, int, int]) -> None:
    """A smooth, class-coloured gradient plus noise: compresses like a photo (~100 KB)."""
    from PIL import Image

    path, label, seed = job
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, SIZE, dtype=np.float32)
    base = np.stack(
        [np.add.outer(ramp * (20 + 9 * label), ramp * (30 * c + 10)) for c in range(3)], -1
    )
    pixels = base + rng.normal(0, 12, size=(SIZE, SIZE, 3)) + 10 * label
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(path)


def make_folder(root: Path, images: int) -> float:
    """root/<class>/<i>.png, written once (a complete folder is reused); seconds taken."""
    done = root / ".complete"
    if done.exists() and done.read_text() == str(images):
        return 0.0
    began = time.perf_counter()
    jobs = []
    for i in range(images):
        label = i % CLASSES
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((folder / f"{i:05d}.png", label, i))
    with Pool(os.cpu_count()) as pool:
        pool.map(_write_image, jobs, chunksize=64)
    done.write_text(str(images))
    return time.perf_counter() - began


def make_subset(root: Path, subset: Path, per_class: int) -> None:
    """subset/<class>/: links to the first `per_class` images of each class."""
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        target = subset / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(folder.glob("*.png"))[:per_class]:
            link = target / path.name
            if not link.exists():
                link.symlink_to(path)


# -- one path, in a child process ------------------------------------------------------


class Bounded:
    """A split's epoch bounded to `n` of its examples, drawn at random once (benchmark
    only): training shuffles 0..n-1 with its own generator, and those positions map to
    the drawn rows of the whole split, so files are read from all over the folder."""

    def __init__(self, split, n: int, seed: int = 0) -> None:
        import torch

        self.split = split
        generator = torch.Generator().manual_seed(seed)
        self.rows = torch.randperm(len(split), generator=generator)[:n]
        self.y = split.y[self.rows.to(split.y.device)]
        self.images = 0

    def __len__(self) -> int:
        return len(self.rows)

    def batches(self, order, batch_size):
        rows = self.rows if order is None else self.rows[order.cpu()]
        for x, y in self.split.batches(rows, batch_size):
            self.images += len(y)
            yield x, y


class PssSampler(threading.Thread):
    """Peak PSS (MB) of this process and its children (DataLoader workers) together."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb, self.running = 0.0, True

    def run(self) -> None:
        while self.running:
            self.peak_mb = max(self.peak_mb, _tree_pss_kb(os.getpid()) / 1024)
            time.sleep(0.2)


def _tree_pss_kb(root: int) -> int:
    pids, parents = [root], {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
        except OSError:
            continue
    pids += [pid for pid, parent in parents.items() if parent == root]
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            total += int(re.search(r"^Pss:\s+(\d+)", text, re.M).group(1))
        except (OSError, AttributeError):
            continue
    return total


def child(settings: dict) -> dict:
    import resource

    import torch

    from evotune.config import resolve
    from evotune.data import StreamedSplit

    torch.set_num_threads(settings["threads"])
    sampler = PssSampler()
    sampler.start()
    config = resolve(
        {
            "task": {"name": "layers", "baselines": []},
            "data": {
                "source": "imagefolder",
                "path": settings["folder"],
                "stream_workers": settings["workers"],
                "split": {"val_fraction": 0.2},
            },
            "model": {"backbone": "torchvision:resnet18", "weights": "none"},
            "fitness": {
                "epochs": 1,
                "batch_size": settings["batch_size"],
                "lr": 1e-3,
                "device": "cpu",
                "cache": False,
                "threads": settings["threads"],
            },
        }
    )
    began = time.perf_counter()
    task = config.task_class.from_config(config)
    load_seconds = time.perf_counter() - began
    streamed = isinstance(task.splits["train"], StreamedSplit)
    train = Bounded(task.splits["train"], settings["train_images"])
    val = Bounded(task.splits["val"], settings["val_images"], seed=1)
    task.splits = {"train": train, "val": val}
    reading = _reading_rate(train, settings["batch_size"])
    genomes = task.space.sample(4, np.random.default_rng(0))
    train.images = val.images = 0
    began = time.perf_counter()
    evaluations = task.evaluate(genomes, np.arange(4) + 100)
    seconds = time.perf_counter() - began
    sampler.running = False
    return {
        "examples": {name: len(task.data.splits()[name]) for name in ("train", "val")},
        "streamed": streamed,
        "notes": task.data.notes,
        "load_seconds": round(load_seconds, 1),
        "reading_images_per_s": round(reading, 1),
        "train_images": train.images,
        "val_images": val.images,
        "seconds": round(seconds, 1),
        "images_per_s": round((train.images + val.images) / seconds, 2),
        "genome_seconds": [e.metrics["train_seconds"] for e in evaluations],
        "fitness": [e.fitness[0] for e in evaluations],
        "child_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "tree_pss_peak_mb": round(sampler.peak_mb),
        "torch_threads": torch.get_num_threads(),
        "workers": settings["workers"],
    }


def _reading_rate(train: Bounded, batch_size: int) -> float:
    """Images per second of the input pipeline alone (one pass of the bounded epoch)."""
    import torch

    began = time.perf_counter()
    n = sum(len(y) for _, y in train.batches(torch.arange(len(train)), batch_size))
    return n / (time.perf_counter() - began)


def run_child(settings: dict) -> dict:
    """One path under /usr/bin/time -v: its result and the peak RSS time reports."""
    command = ["/usr/bin/time", "-v", sys.executable, __file__, "--child", json.dumps(settings)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"child failed:\n{done.stderr[-4000:]}")
    kb = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["time_maxrss_mb"] = round(int(kb.group(1)) / 1024) if kb else None
    return result


# -- main -----------------------------------------------------------------------------


RUNS = "memory:2:0 streamed:2:0 streamed:1:1 memory:1:0 streamed:2:1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/evotune-data-scale"))
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--subset", type=int, default=1000, help="images of the in-memory run")
    parser.add_argument(
        "--runs", default=RUNS, help="PATH:TORCH_THREADS:WORKERS ..., PATH streamed|memory"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=128, help="per genome's epoch")
    parser.add_argument("--val-images", type=int, default=64, help="per validation")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    full = args.folder / f"all{args.images}"
    generated = make_folder(full, args.images)
    subset = args.folder / f"subset{args.subset}"
    make_subset(full, subset, args.subset // CLASSES)
    megabytes = sum(p.stat().st_size for p in full.rglob("*.png")) / 2**20
    print(
        f"folder: {args.images} PNGs, {SIZE}x{SIZE} RGB, {megabytes:.0f} MB on disk "
        f"(generated in {generated:.0f} s; 0: reused); decoded: "
        f"{args.images * 3 * SIZE * SIZE * 4 / 2**30:.1f} GB float32"
    )
    print(
        f"batch {args.batch_size}; per genome: {args.train_images} training images (1 epoch, "
        f"bounded), {args.val_images} validation images; 4 genomes per run\n"
    )
    print(
        "| path | torch threads | DataLoader workers | train+val examples | decoded | load s "
        "| reading alone img/s | generation s | images/s | peak RSS MB (time -v) "
        "| peak PSS MB (with workers) | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in args.runs.split():
        path, threads, workers = run.split(":")
        settings = {
            "folder": str(full if path == "streamed" else subset),
            "threads": int(threads),
            "workers": int(workers),
            "batch_size": args.batch_size,
            "train_images": args.train_images,
            "val_images": args.val_images,
        }
        r = run_child(settings)
        print(json.dumps({"run": run, **r}), file=sys.stderr)
        n = sum(r["examples"].values())
        print(
            f"| {path} | {threads} | {workers if path == 'streamed' else '-'} | {n} "
            f"| {n * 3 * SIZE * SIZE * 4 / 2**30:.1f} GB | {r['load_seconds']} "
            f"| {r['reading_images_per_s']} | {r['seconds']} | {r['images_per_s']} "
            f"| {r['time_maxrss_mb']} | {r['tree_pss_peak_mb']} | {os.getloadavg()[0]:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
