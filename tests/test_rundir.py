"""Run directories: nothing is overwritten without --overwrite, and one process at a
time writes a run (a second one exits 2 naming the first; a killed one blocks nobody)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evotune.cli import main
from evotune.rundir import LOCK_FILE, check_out_dir, run_lock

QUICK = "task: {name: onemax, length: 12}\nsearch: {population: 4, generations: 2}\n"
ZDT = "task: {name: zdt1, n_var: 4}\nsearch: {population: 4, generations: 2, seed: SEED}\n"
SLOW = """\
task: {name: onemax, length: 200}
search: {population: 6, generations: 300, seed: 3}
fitness: {delay: 0.03}
executor: {chunk_size: 1}
output: {report: false}
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text + "output: {report: false}\n" if "output" not in text else text)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path: equal snapshots, untouched run."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def finished_run(tmp_path: Path, name: str = "run", text: str = QUICK) -> Path:
    out = tmp_path / name
    assert main(["run", str(write(tmp_path, text, f"{name}.yaml")), "--out", str(out), "-q"]) == 0
    assert not (out / LOCK_FILE).exists()  # released and removed on a normal exit
    return out


def refused(capsys, out: Path) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert str(out) in err
    return err


# ---- no silent overwrite ------------------------------------------------------------


def test_run_into_a_run_is_refused_until_overwrite(tmp_path, capsys):
    run = finished_run(tmp_path)
    before = snapshot(run)
    config = write(tmp_path, QUICK.replace("generations: 2", "generations: 3"), "longer.yaml")
    assert main(["run", str(config), "--out", str(run), "-q"]) == 2
    err = refused(capsys, run)
    assert f"evotune resume {run}" in err and "--overwrite" in err and "another --out" in err
    assert snapshot(run) == before
    assert main(["run", str(config), "--out", str(run), "-q", "--overwrite"]) == 0
    assert json.loads((run / "summary.json").read_text())["generations"] == 3
    generations = (run / "generations.jsonl").read_text().splitlines()
    assert len(generations) == 3  # replaced, not appended to
    assert not (run / LOCK_FILE).exists()


def test_overwrite_with_bad_input_leaves_the_old_run(tmp_path, capsys):
    run = finished_run(tmp_path, text=ZDT.replace("SEED", "1"))
    before = snapshot(run)
    # valid config, but annealing optimises one objective: refused once the task is built
    bad = write(tmp_path, "task: {name: zdt1, n_var: 4}\nsearch: {algorithm: annealing}\n")
    assert main(["run", str(bad), "--out", str(run), "-q", "--overwrite"]) == 2
    assert "search.algorithm" in capsys.readouterr().err
    assert snapshot(run) == before


def test_a_non_empty_directory_is_refused_even_with_overwrite(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    config = write(tmp_path, QUICK)
    for extra in ([], ["--overwrite"]):
        assert main(["run", str(config), "--out", str(folder), "-q", *extra]) == 2
        assert "not empty (thesis.tex)" in refused(capsys, folder)
    assert snapshot(folder) == {"thesis.tex": b"years of work"}


def test_an_empty_directory_or_one_with_only_a_stale_lock_is_used(tmp_path):
    config = write(tmp_path, QUICK)
    (tmp_path / "empty").mkdir()
    assert main(["run", str(config), "--out", str(tmp_path / "empty"), "-q"]) == 0
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / LOCK_FILE).write_text('{"pid": 1}\n')  # a killed run's
    check_out_dir(tmp_path / "stale")
    assert main(["run", str(config), "--out", str(tmp_path / "stale"), "-q"]) == 0
    assert not (tmp_path / "stale" / LOCK_FILE).exists()


def test_demo_into_a_run_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    run = finished_run(tmp_path)
    before = snapshot(run)

    def no_backbone(quiet=False):  # the refusal comes before the demo's pretraining
        raise AssertionError("the demo started")

    monkeypatch.setattr("evotune.cli.demo_backbone", no_backbone)
    assert main(["demo", "--out", str(run), "-q"]) == 2
    assert "--overwrite" in refused(capsys, run)
    assert snapshot(run) == before


def test_aggregate_refuses_an_existing_run_or_one_of_its_inputs(tmp_path, capsys):
    first = finished_run(tmp_path, "first", ZDT.replace("SEED", "1"))
    second = finished_run(tmp_path, "second", ZDT.replace("SEED", "2"))
    victim = finished_run(tmp_path, "victim")
    before = snapshot(victim)
    args = ["aggregate", str(first), str(second), "--no-analysis", "--out"]
    assert main([*args, str(victim)]) == 2
    assert f"evotune resume {victim}" in refused(capsys, victim)
    assert snapshot(victim) == before
    assert main([*args, str(first), "--overwrite"]) == 2
    assert "one of the runs to merge" in refused(capsys, first)
    assert main([*args, str(tmp_path / "merged")]) == 0
    capsys.readouterr()
    assert main([*args, str(tmp_path / "merged")]) == 2  # an earlier result, too
    refused(capsys, tmp_path / "merged")
    assert main([*args, str(victim), "--overwrite"]) == 0
    assert not (victim / "journal.jsonl").exists() and not (victim / "state").exists()
    merged = json.loads((victim / "summary.json").read_text())
    assert merged["algorithm"] == "aggregate" and not (victim / LOCK_FILE).exists()


def test_export_and_pretrain_refuse_an_existing_file(tmp_path, capsys):
    run = finished_run(tmp_path)
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"an earlier model")
    assert main(["export", str(run), "--out", str(model)]) == 2
    assert "--overwrite" in refused(capsys, model)
    pretrain = tmp_path / "pretrain.yaml"
    pretrain.write_text(f"data: {{source: digits}}\npretrain: {{out: {model}}}\n")
    assert main(["pretrain", str(pretrain)]) == 2  # pretrain.out, checked before training
    assert "--overwrite" in refused(capsys, model)
    assert model.read_bytes() == b"an earlier model"
    assert main(["export", str(run), "--out", str(tmp_path)]) == 2
    assert "is a directory" in refused(capsys, tmp_path)


# ---- one run, one process -----------------------------------------------------------


def evotune(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "evotune", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_lines(proc: subprocess.Popen, path: Path, lines: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= lines:
            return
        time.sleep(0.01)
    raise AssertionError(f"no {lines} lines in {path}: {proc.poll()} {proc.stderr.read()}")


def test_a_second_process_on_a_running_run_exits_2_naming_the_first(tmp_path):
    config = write(tmp_path, SLOW)
    run = tmp_path / "run"
    first = evotune("run", str(config), "--out", str(run), "-q")
    try:
        wait_for_lines(first, run / "journal.jsonl", 2)
        for args in (["resume", str(run)], ["run", str(config), "--out", str(run), "--overwrite"]):
            second = subprocess.run(
                [sys.executable, "-m", "evotune", *args], capture_output=True, text=True
            )
            assert second.returncode == 2, second.stderr
            assert f"in use by evotune process {first.pid} on " in second.stderr
            assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        first.send_signal(signal.SIGTERM)  # stops like Ctrl-C: the lock is released
        assert first.wait(timeout=60) == 130, first.stderr.read()
    assert not (run / LOCK_FILE).exists()
    assert main(["resume", str(run), "-q", "--set", "search.generations=3"]) == 0


def test_a_lock_left_by_a_killed_process_does_not_block_resume(tmp_path, capsys):
    run = finished_run(tmp_path)
    journal = (run / "journal.jsonl").read_bytes()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from evotune.rundir import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(120)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        assert main(["resume", str(run), "-q"]) == 2
        assert f"in use by evotune process {holder.pid}" in refused(capsys, run)
        assert (run / "journal.jsonl").read_bytes() == journal
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (run / LOCK_FILE).exists()  # stale: its process is gone, and so is its flock
    assert main(["resume", str(run), "-q", "--set", "search.generations=3"]) == 0
    assert len((run / "generations.jsonl").read_text().splitlines()) == 3
    assert not (run / LOCK_FILE).exists()


def test_the_lock_is_released_on_an_exception(tmp_path):
    with pytest.raises(RuntimeError), run_lock(tmp_path):
        raise RuntimeError("boom")
    assert not (tmp_path / LOCK_FILE).exists()
    with run_lock(tmp_path):  # and can be taken again
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid()


def test_demo_overwrite_replaces_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("evotune.cli.DEMO_PRETRAIN_OVERRIDES", ["pretrain.epochs=1"])
    run = finished_run(tmp_path)
    small = "search.population=2 search.elitism=1 search.generations=1 fitness.epochs=1"
    overrides = [x for o in small.split() for x in ("--set", o)]
    budget = [*overrides, "--set", "task.baselines=[]", "--set", "output.report=false"]
    assert main(["demo", "--out", str(run), "-q", "--overwrite", *budget]) == 0
    assert json.loads((run / "summary.json").read_text())["task"] == "layers"
    assert len((run / "generations.jsonl").read_text().splitlines()) == 1  # not appended
    assert not (run / LOCK_FILE).exists()
