"""Device and precision: fitness.precision (autocast, fp16's scaler), bad device and
precision settings, and a GPU out-of-memory error recorded as a failed evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from evotune.config import resolve
from evotune.engine.problem import Evaluation, Objective
from evotune.engine.spaces import BinarySpace
from evotune.errors import UserError
from evotune.executors.guard import evaluate_guarded
from evotune.train.device import check_precision, place, resolve_device
from evotune.train.finetune import TrainSettings, fit
from tiny_configs import tiny_layers

LAYERS = tiny_layers(model={"granularity": "block"})


def make_task(task: str = "layers", **fitness):
    raw = json.loads(json.dumps(LAYERS))
    raw["task"] = {"name": task, "baselines": []} if task == "layers" else {"name": task}
    raw["fitness"].update(fitness)
    config = resolve(raw)
    return config.task_class.from_config(config)


@pytest.mark.parametrize("task", ["layers", "hparams"])
def test_bf16_trains_under_autocast_and_fp32_is_unchanged(task):
    fp32, bf16 = make_task(task), make_task(task, precision="bf16")
    genome = fp32.space.sample(1, np.random.default_rng(0))
    seeds = np.array([7])
    a, again = fp32.evaluate(genome, seeds)[0], fp32.evaluate(genome, seeds)[0]
    b = bf16.evaluate(genome, seeds)[0]
    assert a.fitness == again.fitness
    assert all(math.isfinite(v) for v in b.fitness)
    # bf16 keeps 8 bits of mantissa: the losses differ, so autocast was really on
    assert b.metrics["val_loss"] != a.metrics["val_loss"]
    assert b.metrics["val_loss"] == pytest.approx(a.metrics["val_loss"], rel=0.1)


def test_fp16_scales_the_loss_and_trains():
    """fp16's gradient scaler path (CUDA in use; CPU autocast runs it here)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    settings = TrainSettings(epochs=3, batch_size=16, lr=1e-2, precision="fp16")
    result = fit(model, list(model.parameters()), (x, y), (x, y), settings, seed=1)
    assert result.epochs_run == 3 and math.isfinite(result.best_val_loss)


def test_fp16_on_the_cpu_is_refused_naming_the_key():
    with pytest.raises(UserError, match="fitness.precision: fp16 needs a CUDA device"):
        make_task(precision="fp16")
    with pytest.raises(UserError, match="pretrain.precision"):
        check_precision("fp16", torch.device("cpu"), "pretrain.precision")


@pytest.mark.parametrize("name", ["gpu", "mps", "cuda:x", "tpu:0"])
def test_unknown_devices_are_refused_naming_the_key(name):
    with pytest.raises(UserError, match=r"fitness.device: expected auto, cpu, cuda or cuda:N"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_bad_input_with_exit_code_2(tmp_path, capsys):
    from evotune.cli import main

    with pytest.raises(UserError, match="fitness.device: 'cuda:1' requested but no CUDA"):
        make_task(device="cuda:1")
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps(LAYERS | {"fitness": {"device": "cuda"}}))
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "fitness.device: 'cuda'" in capsys.readouterr().err


def test_channels_last_only_for_convolutions_on_a_gpu():
    conv = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert place(conv, torch.device("cpu"))[0].weight.is_contiguous()


class OutOfMemoryOnOnes:
    """A genome with a 1 in its first bit runs out of GPU memory."""

    space = BinarySpace(2)
    objectives = (Objective("ones", "max"),)
    genomes_per_call = None

    def evaluate(self, genomes, seeds):
        if genomes[:, 0].any():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [Evaluation((float(g.sum()),)) for g in genomes]


def test_out_of_memory_fails_one_evaluation_and_names_what_to_lower():
    genomes = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    results = evaluate_guarded(OutOfMemoryOnOnes(), genomes, np.array([1, 2]))
    assert math.isnan(results[0].fitness[0]) and results[1].fitness == (1.0,)
    assert results[0].error.startswith("out of GPU memory: lower fitness.batch_size")
    assert "precision: bf16" in results[0].error and "Tried to allocate" in results[0].error


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_a_gpu_run_is_exported_and_predicted_on_the_cpu_with_device(tmp_path, capsys):
    """A run made with fitness.device: cuda, exported where there is no GPU."""
    from evotune.cli import main

    config = tmp_path / "run.yaml"
    small = LAYERS | {"search": {"population": 2, "generations": 1}, "output": {"report": False}}
    config.write_text(json.dumps(small))
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "--quiet"]) == 0
    yaml = run / "config.yaml"
    yaml.write_text(yaml.read_text().replace("device: cpu", "device: cuda"))
    model = str(tmp_path / "model.safetensors")
    assert main(["export", str(run), "--out", model]) == 2
    assert "fitness.device: 'cuda' requested but no CUDA" in capsys.readouterr().err
    assert main(["export", str(run), "--out", model, "--device", "cpu"]) == 0
    assert main(["export", str(run), "--out", model, "--device", "gpu", "--overwrite"]) == 2
    assert "--device: expected auto, cpu, cuda or cuda:N, got 'gpu'" in capsys.readouterr().err
