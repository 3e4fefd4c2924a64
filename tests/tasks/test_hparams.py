"""Task `hparams`: repair, decoding into networks, successive halving, every algorithm
end to end through the CLI (with the comparison layout), the seed preset, export."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

from evotune.cli import main
from evotune.config import resolve
from evotune.engine.operators import CROSSOVER, MUTATION
from evotune.errors import UserError
from evotune.models import load_checkpoint
from evotune.models.surgery import SEBlock
from evotune.report.mixed_plots import gene_importance
from evotune.report.rundata import load_run
from evotune.runner import build_executor
from evotune.train.finetune import TrainingRun, TrainSettings, fit
from tiny_configs import task_from, updated

BASE = {
    "task": {
        "name": "hparams",
        "genes": {
            "lr": [1e-3, 3e-2],
            "dropout": [0.0, 0.5],
            "head_width": [0, 8],
            "se_blocks": [False, True],
        },
        "baselines": [],
    },
    "data": {
        "source": "digits",
        "classes": [0, 1, 2],
        "max_per_class": 8,
        "split": {"val_fraction": 0.3, "test_fraction": 0.3},
    },
    "model": {"backbone": "builtin:small_cnn", "channels": "keep", "normalize": "none"},
    "fitness": {"epochs": 2, "batch_size": 16, "device": "cpu"},
}


def raw_config(**fitness):
    return updated(BASE, "fitness", **fitness)


def make_task(**fitness):
    return task_from(raw_config(**fitness))


@pytest.fixture(scope="module")
def task():
    return make_task()


def genome(task, **values):
    plan = {"kept": 4, "frozen": 0, "lr": 1e-2, "dropout": 0.0, "head_width": 0}
    return task.space.from_json({**plan, "se_blocks": False, **values})


# -- the space ------------------------------------------------------------------------


def test_repair_keeps_every_genome_valid(task):
    space, rng = task.space, np.random.default_rng(0)
    noise = rng.normal(0, 3, (500, space.n_genes)) + (space.lower + space.upper) / 2
    repaired = space.repair(noise)
    assert space.valid(repaired).all()
    assert np.array_equal(space.repair(repaired), repaired)  # idempotent
    assert (repaired[:, 1] <= repaired[:, 0]).all()  # frozen <= kept
    assert space.valid(space.sample(200, rng)).all()
    children = space.repair(CROSSOVER.build("two_point", "c")(space.sample(50, rng), rng, space))
    children = space.repair(MUTATION.build("reset", "m")(children, rng, space))
    assert space.valid(children).all()


def test_repair_lowers_frozen_to_kept_and_lifts_kept_above_frozen_floor():
    raw = raw_config()
    raw["task"]["genes"] |= {"kept": [1, 4], "frozen": [2, 4]}
    config = resolve(raw)
    space = config.task_class.from_config(config).space
    row = space.from_json(
        {"kept": 3, "frozen": 4, "lr": 0.01, "dropout": 0.1, "head_width": 0, "se_blocks": True}
    )
    assert space.decode(space.repair(row[None])[0])["frozen"] == 3  # lowered to kept
    row[0] = 1  # kept 1 < frozen's floor 2: kept goes up to 2, frozen to 2
    fixed = space.decode(space.repair(row[None])[0])
    assert (fixed["kept"], fixed["frozen"]) == (2, 2)
    assert space.describe()["constraints"] == [{"gene": "frozen", "at_most": "kept"}]


def test_depth_beyond_the_backbone_is_bad_input():
    raw = raw_config()
    raw["task"]["genes"]["kept"] = [1, 58]
    config = resolve(raw)
    with pytest.raises(UserError, match=r"task.genes.kept: \[1, 58\].*4 blocks"):
        config.task_class.from_config(config)


# -- genomes -> networks ----------------------------------------------------------------


def test_truncation_se_head_and_frozen_genes_change_the_built_model(task):
    assert task.template.n_blocks == 4
    for kept in (1, 2, 4):
        net, _ = task.build_net(task.plan(genome(task, kept=kept)), seed=0)
        assert net.n_blocks == kept
    plain, _ = task.build_net(task.plan(genome(task)), seed=0)
    se, _ = task.build_net(task.plan(genome(task, se_blocks=True)), seed=0)
    assert not any(isinstance(m, SEBlock) for m in plain.modules())
    assert sum(isinstance(m, SEBlock) for m in se.modules()) == 2  # one per stage group
    wide, _ = task.build_net(task.plan(genome(task, head_width=8, dropout=0.4)), seed=0)
    assert wide.head.hidden.out_features == 8 and wide.head.drop.p == pytest.approx(0.4)
    frozen, trainable = task.build_net(task.plan(genome(task, frozen=2)), seed=0)
    assert frozen.frozen_prefix() == 2  # 2 blocks: the cached prefix
    assert not any(p.requires_grad for p in frozen.stages[:2].parameters())
    assert all(p.requires_grad for p in frozen.stages[2:].parameters())
    assert not any(p.requires_grad for p in frozen.adapter.parameters())
    _, everything = task.build_net(task.plan(genome(task)), seed=0)
    assert trainable < everything


def test_variants_share_the_templates_pretrained_weights(task):
    net, _ = task.build_net(task.plan(genome(task, kept=2, se_blocks=True)), seed=3)
    template = dict(task.template.named_parameters())
    for name, param in net.named_parameters():
        if name.startswith("stages.0") or name.startswith("stages.1"):
            assert param.equal(template[name]), name


def test_new_head_and_se_blocks_are_kaiming_initialised_from_the_seed(task):
    plan = task.plan(genome(task, se_blocks=True, head_width=8))
    net, _ = task.build_net(plan, seed=4)
    new = [net.head.hidden, net.head.out]
    new += [fc for m in net.modules() if isinstance(m, SEBlock) for fc in (m.fc1, m.fc2)]
    assert all(not layer.bias.any() for layer in new)  # torch's default bias is not zero
    # He normal: std sqrt(2 / fan_in) (torch's default Linear: sqrt(1 / (3 fan_in)))
    std = float(net.head.hidden.weight.detach().std())
    assert std == pytest.approx((2 / net.feature_dim) ** 0.5, rel=0.15)
    again, _ = task.build_net(plan, seed=4)
    assert again.head.hidden.weight.equal(net.head.hidden.weight)
    assert not task.build_net(plan, seed=5)[0].head.hidden.weight.equal(net.head.hidden.weight)


# -- fitness and successive halving ----------------------------------------------------


def test_training_in_pieces_equals_one_fit():
    torch.manual_seed(0)
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    settings = TrainSettings(epochs=4, batch_size=8, lr=0.05, patience=None)

    def model():
        torch.manual_seed(1)
        return torch.nn.Sequential(
            torch.nn.Linear(5, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 3)
        )

    one = model()
    whole = fit(one, list(one.parameters()), (x, y), (x, y), settings, seed=7)
    two = model()
    run = TrainingRun(two, list(two.parameters()), (x, y), (x, y), settings, seed=7)
    run.advance(1)
    torch.randn(100)  # someone else drawing from the global generator in between
    run.advance(4)
    assert [h["val_loss"] for h in run.result().history] == [h["val_loss"] for h in whole.history]


def test_successive_halving_trains_fewer_epochs_and_keeps_full_values_at_the_top():
    full = make_task(epochs=4, patience=None)
    halving = make_task(epochs=4, patience=None, schedule="successive_halving", min_epochs=1, eta=2)
    assert halving.budgets == [1, 2, 4] and halving.whole_generation
    genomes = full.space.sample(6, np.random.default_rng(1))
    seeds = np.arange(6) + 100
    exact = full.evaluate(genomes, seeds)
    fast = halving.evaluate(genomes, seeds)
    assert sum(e.metrics["epochs"] for e in fast) < sum(e.metrics["epochs"] for e in exact)
    assert [e.metrics["rung"] for e in fast].count(2) == 2  # 6 -> 3 -> 2 reach 4 epochs
    for quick, slow in zip(fast, exact):
        if quick.metrics["fidelity"] == 1.0:
            assert quick.fitness == slow.fitness  # the same training, to the last bit
        else:  # a best-so-far loss: never better than the full-budget one
            assert quick.fitness[0] >= slow.fitness[0]


def test_successive_halving_refuses_executor_chunks():
    raw = raw_config(schedule="successive_halving")
    raw["executor"] = {"chunk_size": 2}
    config = resolve(raw)
    task = config.task_class.from_config(config)
    with pytest.raises(UserError, match="executor.chunk_size"):
        build_executor(config.executor, task)


# -- seed preset ------------------------------------------------------------------------


def test_seed_preset_is_densenet121_with_se_and_the_seeds_genes():
    raw = {
        "task": "hparams",
        "data": BASE["data"],
        "model": {"weights": "none"},
        "search": {"preset": "seed", "population": 4},
        "fitness": {"epochs": 1, "device": "cpu"},
    }
    config = resolve(raw)
    assert config.model.backbone == "torchvision:densenet121" and config.model.se_blocks
    assert config.model.weights == "none"  # the user's value wins over the preset's
    genes = config.task.genes
    assert (genes.kept, genes.frozen, genes.lr, genes.dropout) == (
        (1, 58),
        (0, 18),
        (1e-6, 1e-1),
        (0.1, 0.9),
    )
    ops = config.search.operators
    assert ops.selection == {"name": "tournament", "k": 2}
    assert (ops.crossover["name"], ops.mutation["name"]) == ("two_point", "reset")
    assert config.fitness.optimizer == "adam" and config.fitness.schedule == "full"
    assert resolve(json.loads(json.dumps(config.to_dict()))).to_dict() == config.to_dict()
    task = config.task_class.from_config(config)
    assert task.template.n_blocks == 58  # DenseNet-121's dense layers
    assert [o.name for o in task.objectives] == ["val_loss"]


# -- end to end -------------------------------------------------------------------------


def test_every_algorithm_runs_through_the_cli_side_by_side(tmp_path, capsys):
    raw = raw_config(epochs=1, schedule="successive_halving")
    raw["fitness"]["eta"] = 2
    raw["task"]["baselines"] = ["default"]
    algorithms = ["ga", "annealing", "random"]
    if importlib.util.find_spec("optuna"):  # the optional extra (in evotune[dev])
        algorithms += ["tpe", "optuna_nsga2"]
    raw["search"] = {"preset": "tl-hparams", "population": 3, "generations": 2}
    raw["search"]["compare"] = algorithms
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw))
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert list(summary["comparison"]) == algorithms
    for name in algorithms:
        sub = json.loads((run / name / "summary.json").read_text())
        assert sub["algorithm"] == name and sub["generations"] == 2
        assert name in out
        assert (run / name / "report.html").exists()
        assert "test_accuracy" in sub["best"]["metrics"] and "default" in sub["baselines"]
    assert summary["best"]["algorithm"] in algorithms
    assert (run / "report.html").exists() and (run / "plots" / "comparison.png").exists()
    assert (run / "ga" / "plots" / "parallel.png").exists()
    entries = load_run(run / "ga").journal
    assert all("fidelity" in e["metrics"] for e in entries)

    assert main(["resume", str(run), "-q", "--set", "search.generations=3"]) == 0
    again = json.loads((run / "summary.json").read_text())
    assert all(again["comparison"][n]["generations"] == 3 for n in algorithms)

    best = tmp_path / "best.safetensors"
    assert main(["export", str(run), "--out", str(best)]) == 0
    net, meta = load_checkpoint(best)
    assert meta["hparams"] == again["best"]["genome"]
    assert net.n_blocks == meta["plan"]["kept"]


def test_missing_optuna_is_a_clear_bad_input(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    raw = raw_config(epochs=1)
    raw["search"] = {"algorithm": "tpe", "population": 2, "generations": 1}
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(raw))
    assert main(["run", str(config), "--out", str(tmp_path / "r"), "-q"]) == 2
    assert "pip install 'evotune[optuna]'" in capsys.readouterr().err


def test_gene_importance_finds_the_gene_that_matters(tmp_path):
    rng = np.random.default_rng(0)
    journal = []
    for i in range(60):
        lr, dropout = 10 ** rng.uniform(-5, -1), rng.uniform(0, 0.5)
        loss = abs(np.log10(lr) + 3) + rng.normal(0, 0.05)
        genome = {"lr": lr, "dropout": dropout, "se_blocks": bool(i % 2)}
        journal.append({"generation": 0, "index": i, "genome": genome, "fitness": [loss]})
    summary = {"task": "hparams", "objectives": [{"name": "val_loss", "direction": "min"}]}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "generations.jsonl").write_text(json.dumps({"generation": 0}) + "\n")
    (tmp_path / "journal.jsonl").write_text("\n".join(json.dumps(e) for e in journal))
    importance = gene_importance(load_run(tmp_path))
    assert max(importance, key=importance.get) == "lr"
    assert importance["lr"] > 0.5 > importance["dropout"] + importance["se_blocks"]


def test_streaming_from_disk_gives_the_in_memory_fitness(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(["a", "b", "c"]):
        (tmp_path / name).mkdir()
        for i in range(6):
            pixels = rng.integers(0, 150, size=(12, 12)) + 50 * k
            Image.fromarray(pixels.astype(np.uint8), "L").save(tmp_path / name / f"{i}.png")

    def task(in_memory):
        raw = raw_config(epochs=2, batch_size=4)
        raw["data"] = {"source": "imagefolder", "path": str(tmp_path), "in_memory": in_memory}
        config = resolve(raw)
        return config.task_class.from_config(config)

    memory, disk = task(True), task(False)
    genomes = np.stack([genome(memory), genome(memory, frozen=2, head_width=8)])
    seeds = np.array([1, 2])
    a, b = memory.evaluate(genomes, seeds), disk.evaluate(genomes, seeds)
    assert disk.cache.misses == 1
    assert [e.fitness for e in a] == [e.fitness for e in b]
