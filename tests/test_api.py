"""The Python API (evotune.run / resume / open_run and Run), as a notebook uses it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import evotune
from evotune.cli import main
from tiny_configs import tiny_layers

ONEMAX = {
    "task": {"name": "onemax", "length": 24},
    "search": {"population": 8, "generations": 5, "seed": 2},
    "output": {"report": False},
}
LAYERS = tiny_layers(
    max_per_class=20,
    search={"population": 4, "generations": 1, "seed": 1},
    fitness={"epochs": 5},
    output={"report": False},
)


def comparable(run: evotune.Run) -> dict:
    """A run's journal, generations and summary, without wall-clock times."""
    generations = [json.loads(x) for x in (run.path / "generations.jsonl").read_text().splitlines()]
    summary = {k: v for k, v in run.summary.items() if k != "wall_seconds"}
    return {
        "journal": [{k: v for k, v in e.items() if k != "seconds"} for e in run.journal()],
        "generations": [{k: v for k, v in g.items() if k != "seconds"} for g in generations],
        "summary": summary,
    }


def test_importing_evotune_loads_no_torch():
    code = "import evotune, sys; print('torch' in sys.modules, callable(evotune.run))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_run_from_a_dict(tmp_path, capsys):
    config = json.loads(json.dumps(ONEMAX))
    run = evotune.run(config, out=tmp_path / "run")
    assert capsys.readouterr() == ("", "")  # quiet by default
    assert config == ONEMAX  # the caller's dict is not changed
    assert isinstance(run, evotune.Run) and run.path == tmp_path / "run" and run.finished
    summary = json.loads((run.path / "summary.json").read_text())
    assert run.summary == summary and summary["task"] == "onemax"
    best = summary["best"]
    assert run.best == evotune.Best(best["genome"], tuple(best["fitness"]), best["metrics"])
    assert run.best.fitness == (best["genome"].count("1"),)
    journal = run.journal()
    assert len(journal) == len((run.path / "journal.jsonl").read_text().splitlines())
    assert sum(not e["cached"] for e in journal) == summary["evaluations"]
    assert run.config["search"]["population"] == 8
    assert run.config["output"]["dir"] == str(tmp_path / "run")
    assert not (run.path / "report.html").exists()
    assert run.report() == run.path / "report.html" and run.report().is_file()
    assert "Run" in repr(run) and "finished" in repr(run)


def test_run_from_a_path_with_overrides_and_progress(tmp_path, capsys, monkeypatch):
    path = tmp_path / "onemax.yaml"
    path.write_text(yaml.safe_dump({**ONEMAX, "output": {"dir": "from-config"}}))
    monkeypatch.chdir(tmp_path)  # output.dir is relative to the working directory
    run = evotune.run(
        str(path),
        overrides=["search.generations=3", "output.report=false"],
        quiet=False,
    )
    assert run.path == Path("from-config") and run.summary["generations"] == 3
    assert run.config["search"]["generations"] == 3
    assert "gen" in capsys.readouterr().err  # the command line's progress lines


def test_run_refuses_a_run_directory_unless_overwrite(tmp_path):
    first = evotune.run(ONEMAX, out=tmp_path / "run")
    with pytest.raises(evotune.UserError, match="already holds a run"):
        evotune.run(ONEMAX, out=first.path, overrides=["search.generations=2"])
    again = evotune.run(ONEMAX, out=first.path, overrides=["search.generations=2"], overwrite=True)
    assert again.summary["generations"] == 2


def cli_message(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    return err.removeprefix("error: ").rstrip("\n")


def test_bad_input_raises_user_error_with_the_cli_message(tmp_path, capsys):
    bad = {"task": "onemax", "search": {"populaton": 5}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(evotune.UserError) as raised:
        evotune.run(bad, out=tmp_path / "a")
    assert "search.populaton: unknown key (did you mean 'population'?)" in str(raised.value)
    assert str(raised.value) == cli_message(capsys, ["run", str(tmp_path / "bad.yaml")])

    missing = tmp_path / "missing.yaml"
    with pytest.raises(evotune.UserError) as raised:
        evotune.run(missing)
    assert str(raised.value) == cli_message(capsys, ["run", str(missing)])

    with pytest.raises(evotune.UserError) as raised:
        evotune.run(ONEMAX, out=tmp_path / "b", overrides=["search.population"])
    assert str(raised.value) == "--set expects key.path=value, got 'search.population'"
    with pytest.raises(evotune.UserError, match="expected a list of 'key.path=value' strings"):
        evotune.run(ONEMAX, overrides="search.population=4")
    with pytest.raises(evotune.UserError, match="a path to a YAML file or a dict"):
        evotune.run(42)  # type: ignore[arg-type]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_open_run_and_resume_refuse_what_is_not_a_run(tmp_path, capsys):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(evotune.UserError, match="is not a directory"):
        evotune.open_run(nowhere)
    assert str(pytest.raises(evotune.UserError, evotune.open_run, tmp_path).value) == (
        f"{tmp_path / 'config.yaml'} not found: is {tmp_path} an evotune run directory?"
    )
    with pytest.raises(evotune.UserError) as raised:
        evotune.resume(nowhere)
    assert str(raised.value) == cli_message(capsys, ["resume", str(nowhere)])

    run = evotune.run(ONEMAX, out=tmp_path / "run")
    with pytest.raises(evotune.UserError) as raised:
        evotune.resume(run.path, overrides=["search.population=50"])
    assert "can only change its stop rules" in str(raised.value)
    assert str(raised.value) == cli_message(
        capsys, ["resume", str(run.path), "--set", "search.population=50"]
    )


def test_an_interrupted_run_opens_and_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    whole = evotune.run(ONEMAX, out=tmp_path / "whole")

    from evotune.progress import ConsoleProgress

    def stop_after_generation_2(self, record):
        if record["generation"] == 2:
            raise KeyboardInterrupt  # Ctrl-C in a notebook

    with monkeypatch.context() as patch:
        patch.setattr(ConsoleProgress, "generation_finished", stop_after_generation_2)
        with pytest.raises(KeyboardInterrupt):
            evotune.run(ONEMAX, out=tmp_path / "cut")

    cut = evotune.open_run(tmp_path / "cut")
    assert not cut.finished and "unfinished" in repr(cut)
    journal = cut.journal()
    assert 0 < len(journal) < len(whole.journal())
    assert {e["generation"] for e in journal} == {0, 1, 2}
    summary = cut.summary  # what the journal holds so far
    assert summary["objectives"] == [{"name": "ones", "direction": "max"}]
    best = max((e for e in journal if not e["cached"]), key=lambda e: e["fitness"][0])
    assert cut.best.fitness == tuple(best["fitness"])
    assert cut.config == yaml.safe_load((cut.path / "config.yaml").read_text())

    resumed = evotune.resume(cut.path)
    assert resumed.finished and resumed.path == cut.path
    assert comparable(resumed) == comparable(whole)


def test_resume_with_more_generations_equals_a_longer_run(tmp_path):
    long = evotune.run(ONEMAX, out=tmp_path / "long", overrides=["search.generations=7"])
    short = evotune.run(ONEMAX, out=tmp_path / "short", overrides=["search.generations=3"])
    assert short.summary["generations"] == 3
    extended = evotune.resume(short.path, overrides=["search.generations=7"])
    assert comparable(extended) == comparable(long)
    assert evotune.open_run(short.path).best == long.best


def test_a_stopped_run_is_a_finished_run_that_resume_extends(tmp_path):
    stopped = evotune.run(ONEMAX, out=tmp_path / "run", overrides=["search.max_evaluations=12"])
    summary = stopped.summary
    assert summary["stopped_by"] == "max_evaluations" and summary["evaluations"] >= 12
    (stopped.path / "summary.json").unlink()  # as if killed before writing it
    opened = evotune.open_run(stopped.path)
    assert opened.best == evotune.Best(
        summary["best"]["genome"], tuple(summary["best"]["fitness"]), summary["best"]["metrics"]
    )
    # A stop rule ends the run where it stopped (mid-generation here): resume goes on
    # from there to the generations the config allows.
    resumed = evotune.resume(opened.path, overrides=["search.max_evaluations=null"])
    assert resumed.summary["stopped_by"] == "generations"
    assert resumed.summary["generations"] == ONEMAX["search"]["generations"]
    assert resumed.best.fitness >= opened.best.fitness


@pytest.fixture(scope="module")
def layers_run(tmp_path_factory) -> evotune.Run:
    """A tiny `layers` search on the embedded digits (seconds)."""
    return evotune.run(LAYERS, out=tmp_path_factory.mktemp("layers") / "run")


def test_export_of_a_layers_run(layers_run, tmp_path, capsys):
    from evotune.models import load_checkpoint

    out = layers_run.export(tmp_path / "best.safetensors")
    assert out == tmp_path / "best.safetensors" and out.is_file()
    _, meta = load_checkpoint(out)
    assert meta["mask"] == layers_run.best.genome

    with pytest.raises(evotune.UserError) as raised:
        layers_run.export(out)
    assert "--overwrite" in str(raised.value)
    argv = ["export", str(layers_run.path), "--out", str(out)]
    assert str(raised.value) == cli_message(capsys, argv)
    with pytest.raises(evotune.UserError, match="the run has one objective"):
        layers_run.export(tmp_path / "knee.safetensors", pick="knee")
    with pytest.raises(evotune.UserError, match="--epochs: expected a positive number"):
        layers_run.export(tmp_path / "e.safetensors", epochs=0)
    assert layers_run.export(out, epochs=1, overwrite=True) == out


def digits_npz(path: Path, classes: int = 3) -> Path:
    """New data for predict: the digits of the first `classes` classes, labelled, as an
    npz (the embedded source's scale: pixel counts / 16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = digits.target < classes
    x = (digits.images[keep] / 16.0).astype(np.float32)[:, None]
    np.savez(path, x=x, y=digits.target[keep])
    return path


def test_load_model_is_the_best_model_in_eval_mode(layers_run, tmp_path):
    import torch

    with torch.inference_mode():  # a notebook's habit: retraining turns gradients on again
        model = layers_run.load_model()
    assert isinstance(model, torch.nn.Module) and not model.training
    exported = layers_run.export(tmp_path / "best.safetensors")
    from evotune.predict import load_model

    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():  # the same retraining as export: the same network
        assert torch.equal(model(x), load_model(exported)(x))


def test_predict_applies_the_best_model_to_new_data(layers_run, tmp_path):
    import torch

    data = {"source": "npz", "path": str(digits_npz(tmp_path / "new.npz"))}
    result = layers_run.predict(data, out=tmp_path / "predictions.csv")
    assert result.csv == tmp_path / "predictions.csv" and result.csv.is_file()
    assert result.metrics_json == tmp_path / "predictions.metrics.json"
    assert result.classes == ["0", "1", "2"] and len(result.rows) == result.metrics["examples"]
    assert result.metrics["accuracy"] > 0.6  # the training's pipeline, applied to new data
    x = torch.from_numpy(np.load(tmp_path / "new.npz")["x"])
    with torch.no_grad():
        predicted = layers_run.load_model()(x).argmax(dim=1).tolist()
    assert [row["predicted"] for row in result.rows] == [str(p) for p in predicted]

    with pytest.raises(evotune.UserError, match="--overwrite"):  # as the command line
        layers_run.predict(data, out=tmp_path / "predictions.csv")
    again = layers_run.predict(data, out=tmp_path / "predictions.csv", overwrite=True)
    assert again.rows == result.rows
    unlabelled = layers_run.predict({"source": "digits"}, overrides=["label=none"])
    assert unlabelled.metrics is None and unlabelled.csv is None
    with pytest.raises(evotune.UserError, match="not among the model's classes"):
        layers_run.predict({"source": "digits"})  # ten classes; the model knows three
