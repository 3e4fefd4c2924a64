"""Population-batched `layers` training (`task.batch`, train/poplayers.py): the same
values as one genome at a time (to a stated tolerance), and a member's value
independent of its companions (bit for bit), so a generation split differently (a
resumed run) gives the same journal."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from evotune.api import run as run_search
from evotune.config import resolve
from evotune.train.poplayers import PopulationTrainer
from tiny_configs import tiny_layers

BASE = tiny_layers(model={"backbone": "builtin:small_resnet"}, fitness={"epochs": 3, "threads": 1})
# float32 stacked kernels (grouped convolutions, batched matmuls) sum in another order
# than one member's: a few steps of Adam keep the difference at this level.
VAL_LOSS_REL = 1e-5


def make_task(batch=1, batchnorm="frozen_eval", **fitness):
    raw = json.loads(json.dumps(BASE))
    raw["task"]["batch"] = batch
    raw["model"]["batchnorm"] = batchnorm
    raw["fitness"].update(fitness)
    config = resolve(raw)
    task = config.task_class.from_config(config)
    task.setup_process()
    return task


@pytest.mark.parametrize("batchnorm", ["frozen_eval", "eval", "train"])
def test_batched_equals_one_at_a_time_to_the_tolerance(batchnorm):
    one, stacked = make_task(1, batchnorm), make_task(4, batchnorm)
    assert one.batched is None and stacked.batched is not None
    assert stacked.genomes_per_call == 4
    genomes = one.space.sample(4, np.random.default_rng(0))
    genomes[0] = 0  # head only: every backbone batch norm frozen
    seeds = np.array([11, 12, 13, 14])
    for a, b in zip(one.evaluate(genomes, seeds), stacked.evaluate(genomes, seeds)):
        assert a.fitness == b.fitness  # best validation accuracy: equal
        assert b.metrics["val_loss"] == pytest.approx(a.metrics["val_loss"], rel=VAL_LOSS_REL)
        for key in ("trainable_params", "trainable_genes", "epochs", "epochs_trained"):
            assert a.metrics[key] == b.metrics[key], key


@pytest.mark.parametrize("batchnorm", ["frozen_eval", "eval", "train"])
def test_a_member_does_not_depend_on_its_companions(batchnorm):
    task = make_task(4, batchnorm)
    genomes = task.space.sample(5, np.random.default_rng(1))
    seeds = np.arange(100, 105)
    together = task.evaluate(genomes[:4], seeds[:4])
    alone = task.evaluate(genomes[2:3], seeds[2:3])  # a stack of one (padded)
    others = task.evaluate(genomes[[4, 2]], seeds[[4, 2]])
    wanted = {k: v for k, v in together[2].metrics.items() if k != "train_seconds"}
    for got in (alone[0], others[1]):
        assert got.fitness == together[2].fitness
        assert {k: v for k, v in got.metrics.items() if k != "train_seconds"} == wanted


def test_frozen_members_keep_their_weights_and_statistics():
    task = make_task(2, weight_decay=0.01)
    genomes = np.zeros((2, task.space.n_genes), dtype=np.uint8)
    genomes[1, :4] = 1  # member 1 trains the stem and layer1.0's first conv and norm
    nets = []
    for genome, seed in zip(genomes, (1, 2)):
        net = task.fresh_net(seed)
        net.set_trainable(genome.astype(bool), adapter=False)
        nets.append(net)
    settings = dataclasses.replace(task.fitness.train_settings(), eval_batch_size=64)
    trainer = PopulationTrainer(nets, task.splits["train"], task.splits["val"], settings, [1, 2])
    trainer.fit()
    template = dict(task.template.named_parameters()) | dict(task.template.named_buffers())
    for name, stacked in (trainer.params | trainer.buffers).items():
        if name.startswith("stages.") and not name.endswith("member_train"):
            assert torch.equal(stacked[0], template[name]), name  # all frozen: untouched
    assert not torch.equal(
        trainer.params["stages.0.conv1.weight"][1], template["stages.0.conv1.weight"]
    )
    assert not torch.equal(
        trainer.buffers["stages.0.bn1.running_mean"][1], template["stages.0.bn1.running_mean"]
    )


def test_unbatchable_settings_fall_back_to_one_at_a_time():
    halving = make_task(4, schedule="successive_halving")
    assert halving.batched is None
    assert any("task.batch" in note for note in halving.template.notes)
    assert make_task("auto").batched is None  # auto: one at a time on a CPU


def test_a_run_split_into_other_stacks_journals_the_same(tmp_path):
    def journal(batch):
        raw = json.loads(json.dumps(BASE))
        raw["task"]["batch"] = batch
        raw["fitness"]["epochs"] = 2
        raw["search"] = {"population": 4, "generations": 2, "seed": 3}
        run_search(raw, out=tmp_path / f"b{batch}")
        lines = (tmp_path / f"b{batch}" / "journal.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        return [(r["genome"], r["fitness"], r["metrics"]["val_loss"]) for r in rows]

    assert journal(4) == journal(3)
