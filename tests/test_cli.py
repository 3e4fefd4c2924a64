"""The command line, as users run it: exit codes, messages, files, kill and resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evotune.cli import main

SLOW_ONEMAX = """\
task: {name: onemax, length: 40}
search: {population: 8, generations: 7, seed: 3}
fitness: {delay: 0.04}
executor: {chunk_size: 1}
output: {report: false}
"""
SLOW_ZDT = """\
task: {name: zdt1, n_var: 6}
search: {population: 6, generations: 6, seed: 5}
fitness: {delay: 0.04}
executor: {chunk_size: 1}
output: {report: false}
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def evotune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evotune", *args], capture_output=True, text=True, timeout=120
    )


def comparable_run(run_dir: Path) -> dict:
    """Everything a run produced except wall-clock times."""

    def lines(name):
        rows = [json.loads(x) for x in (run_dir / name).read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("wall_seconds")
    return {
        "journal": lines("journal.jsonl"),
        "generations": lines("generations.jsonl"),
        "summary": summary,
    }


def test_run_writes_the_run_directory(tmp_path, capsys):
    config = write(tmp_path, "task: {name: onemax, length: 20}\nsearch: {generations: 5}\n")
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "-q"]) == 0
    run = tmp_path / "run"
    for name in (
        "config.yaml",
        "journal.jsonl",
        "generations.jsonl",
        "summary.json",
        "report.html",
        "state/checkpoint.npz",
        "plots/fitness.png",
    ):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "onemax" and summary["generations"] == 5
    assert summary["objectives"] == [{"name": "ones", "direction": "max"}]
    assert "best: ones=" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_message_and_no_traceback(tmp_path):
    config = write(tmp_path, "task: onemax\nsearch: {populaton: 5}\n")
    result = evotune("run", str(config))
    assert result.returncode == 2
    assert "search.populaton: unknown key (did you mean 'population'?)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["run", "missing.yaml"],
        ["frobnicate"],
        ["resume", "no-such-run"],
        ["report", "nowhere"],
        ["run"],
    ],
)
def test_bad_arguments_exit_2(tmp_path, capsys, args):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_run_refuses_a_directory_that_holds_a_run(tmp_path, capsys):
    config = write(tmp_path, "task: onemax\nsearch: {generations: 2}\noutput: {report: false}\n")
    assert main(["run", str(config), "--out", str(tmp_path / "r"), "-q"]) == 0
    assert main(["run", str(config), "--out", str(tmp_path / "r"), "-q"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_validate_prints_a_config_that_validates_again(tmp_path, capsys):
    config = write(tmp_path, "task: onemax\nsearch: {preset: seed}\n")
    assert main(["validate", str(config), "--set", "search.generations=9"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["search"]["generations"] == 9
    assert resolved["search"]["operators"]["mutation"]["name"] == "seed_flip"
    again = write(tmp_path, yaml.safe_dump(resolved), "again.yaml")
    assert main(["validate", str(again)]) == 0


def test_list_discovers_operators_by_pattern(capsys):
    assert main(["list", "operators", "*point"]) == 0
    out = capsys.readouterr().out
    assert "one_point" in out and "two_point" in out and "bit_flip" not in out


def kill_after(config: Path, out: Path, lines: int) -> None:
    """Start a run in a subprocess and SIGKILL it once the journal has `lines` lines."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "evotune", "run", str(config), "--out", str(out), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= lines:
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"run ended before the kill: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize(
    ("config_text", "kill_at"),
    [(SLOW_ONEMAX, 3), (SLOW_ONEMAX, 19), (SLOW_ZDT, 14)],
    ids=["onemax-first-generation", "onemax-mid-run", "zdt1-nsga2-mid-run"],
)
def test_killed_run_resumes_to_the_same_result(tmp_path, config_text, kill_at):
    config = write(tmp_path, config_text)
    assert main(["run", str(config), "--out", str(tmp_path / "whole"), "-q"]) == 0
    kill_after(config, tmp_path / "killed", kill_at)
    assert main(["resume", str(tmp_path / "killed"), "-q"]) == 0
    assert comparable_run(tmp_path / "killed") == comparable_run(tmp_path / "whole")


def test_resume_extends_generations_like_a_longer_run(tmp_path):
    config = write(tmp_path, "task: {name: onemax, length: 30}\noutput: {report: false}\n")
    assert (
        main(
            [
                "run",
                str(config),
                "--out",
                str(tmp_path / "long"),
                "-q",
                "--set",
                "search.generations=9",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "run",
                str(config),
                "--out",
                str(tmp_path / "short"),
                "-q",
                "--set",
                "search.generations=4",
            ]
        )
        == 0
    )
    assert main(["resume", str(tmp_path / "short"), "-q", "--set", "search.generations=9"]) == 0
    assert comparable_run(tmp_path / "short") == comparable_run(tmp_path / "long")


def test_resume_refuses_an_edited_config_and_non_stop_overrides(tmp_path, capsys):
    config = write(
        tmp_path,
        "task: {name: onemax, length: 30}\nsearch: {generations: 2}\noutput: {report: false}\n",
    )
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    assert main(["resume", str(run), "--set", "search.population=50"]) == 2
    assert "can only change its stop rules" in capsys.readouterr().err
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["search"]["seed"] = 99
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["resume", str(run)]) == 2
    assert "changed: search.seed" in capsys.readouterr().err


def test_models_lists_builtins_with_gene_counts(capsys):
    assert main(["models", "builtin:*", "--genes"]) == 0
    out = capsys.readouterr().out
    assert "builtin:small_cnn" in out and "leaf 8" in out
    assert main(["models", "nothing-like-this*"]) == 2


def test_a_full_disk_names_the_file_exits_2_and_the_run_resumes(tmp_path, capsys, monkeypatch):
    import errno

    import evotune.engine.journal

    config = write(
        tmp_path,
        "task: {name: onemax, length: 30}\nsearch: {generations: 5}\noutput: {report: false}\n",
    )
    assert main(["run", str(config), "--out", str(tmp_path / "clean"), "-q"]) == 0
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 5:  # some generations in
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(evotune.engine.journal.os, "fsync", fsync)  # os: journal, state
    run = tmp_path / "full"
    assert main(["run", str(config), "--out", str(run), "-q"]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"cannot write {run}/\S+: No space left on device", err)
    assert "Traceback" not in err and "evotune resume" in err
    monkeypatch.setattr(evotune.engine.journal.os, "fsync", real_fsync)
    assert main(["resume", str(run), "-q"]) == 0
    assert comparable_run(run) == comparable_run(tmp_path / "clean")


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_out_folder_that_cannot_be_made_is_bad_input(tmp_path, capsys, where):
    config = write(tmp_path, "task: onemax\noutput: {report: false}\n")
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "run" if where == "under-a-file" else Path("/proc/evotune-run")
    assert main(["run", str(config), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: --out {out}: cannot create this folder (")
        and "Traceback" not in err
    )


def test_weights_that_are_not_a_torch_file_are_bad_input(tmp_path, capsys):
    (tmp_path / "w.pth").write_text("hello, not tensors")
    text = (
        "task: {name: layers, baselines: []}\n"
        "data: {source: digits, classes: [0, 1], max_per_class: 6}\n"
        f"model: {{backbone: 'builtin:small_cnn', weights: {tmp_path / 'w.pth'}}}\n"
        "fitness: {epochs: 1, device: cpu}\n"
    )
    config = write(tmp_path, text)
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"model.weights: cannot read {tmp_path / 'w.pth'} as a torch file" in err
    assert len(err.strip().splitlines()) == 1
