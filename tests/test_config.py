"""Config loading: overrides, presets, defaults, and every bad input named clearly."""

from __future__ import annotations

import pytest
import yaml

from evotune.config import apply_overrides, load_config, resolve
from evotune.errors import UserError


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_string_task_and_defaults_resolve():
    config = resolve({"task": "onemax"})
    assert config.task.length == 100
    assert config.search.generations == 20  # a budget is always set
    assert config.search.operators.mutation == {"name": "bit_flip", "rate": None}


def test_generations_default_not_applied_when_another_budget_is_set():
    config = resolve({"task": "onemax", "search": {"max_evaluations": 50}})
    assert config.search.generations is None


def test_overrides_parse_yaml_values_and_expand_string_sections():
    raw = apply_overrides(
        {"task": "onemax", "search": {"operators": {"mutation": "bit_flip"}}},
        ["task.length=12", "search.operators.mutation.rate=0.25", "search.target=null"],
    )
    assert raw["task"] == {"name": "onemax", "length": 12}
    assert raw["search"]["operators"]["mutation"] == {"name": "bit_flip", "rate": 0.25}
    assert raw["search"]["target"] is None


def test_seed_preset_fills_unset_keys_and_user_values_win():
    config = resolve(
        {"task": "onemax", "search": {"preset": "seed", "population": 10, "elitism": 5}}
    )
    assert config.search.population == 10 and config.search.elitism == 5
    assert config.search.operators.crossover == {"name": "sequential"}
    assert config.search.operators.selection == {"name": "truncation", "fraction": 0.5}


def test_moevoprune_preset_budget_is_evaluations_not_generations():
    config = resolve({"task": "onemax", "search": {"preset": "moevoprune"}})
    assert config.search.max_evaluations == 200 and config.search.generations is None
    assert config.search.population == 30


def test_resolved_config_round_trips_through_yaml():
    config = resolve({"task": "zdt1", "search": {"population": 8}})
    again = resolve(yaml.safe_load(config.to_yaml()))
    assert again.to_dict() == config.to_dict()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "task: onemax\nsearch: {populaton: 5}\n",
            "search.populaton: unknown key (did you mean 'population'?)",
        ),
        (
            "task: onemax\nsearch: {population: -5}\n",
            "search.population: input should be greater than or equal to 1, got -5",
        ),
        (
            "task: onemax\nsearch: {generations: many}\n",
            "search.generations: input should be a valid integer",
        ),
        ("task: onemx\n", "unknown task 'onemx' (did you mean 'onemax'?)"),
        ("task: {name: onemax, lenght: 3}\n", "task.lenght: unknown key (did you mean 'length'?)"),
        (
            "task: onemax\nsearch: {operators: {crossover: sbx}}\n",
            "crossover 'sbx' works on real or mixed genomes",
        ),
        (
            "task: onemax\nsearch: {operators: {mutation: bitflip}}\n",
            "unknown mutation 'bitflip' (did you mean 'bit_flip'?)",
        ),
        (
            "task: onemax\nsearch: {operators: {mutation: {name: bit_flip, rat: 0.1}}}\n",
            "search.operators.mutation.rat: unknown parameter",
        ),
        (
            "task: onemax\nsearch: {operators: {crossover: {name: uniform, swap: 2}}}\n",
            "search.operators.crossover.swap: input should be less than or equal to 1",
        ),
        (
            "task: onemax\nsearch: {elitism: 24}\n",
            "elitism (24) must be smaller than population (24)",
        ),
        (
            "task: onemax\nsearch: {preset: selectiv-tuning}\n",
            "unknown preset 'selectiv-tuning' (did you mean 'selective-tuning'?)",
        ),
        ("task: zdt1\nsearch: {preset: seed}\n", "task 'zdt1' has no seed preset"),
        ("task: onemax\ndata: {source: idx}\n", "data: task 'onemax' takes no data section"),
        (
            "task: onemax\nfitness: {delay: -1}\n",
            "fitness.delay: input should be greater than or equal to 0",
        ),
        ("task: onemax\nexecutor: {kind: spark}\n", "executor.kind: input should be 'local'"),
        ("search: {population: 3}\n", "task: required key is missing"),
        ("task: onemax\nsearch: [1, 2\n", "invalid YAML at line"),
        ("- just\n- a list\n", "expected a mapping of sections"),
        ("task: onemax\nbogus: 1\n", "bogus: unknown key"),
    ],
)
def test_bad_configs_name_the_key_and_the_expectation(tmp_path, text, expected):
    with pytest.raises(UserError) as err:
        load_config(write(tmp_path, text))
    assert expected in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="nope.yaml' not found"):
        load_config(tmp_path / "nope.yaml")


def test_bad_override_syntax():
    with pytest.raises(UserError, match="--set expects key.path=value"):
        apply_overrides({"task": "onemax"}, ["search.population"])


# -- seed defaults beyond `search` ----------------------------------------------------


@pytest.mark.parametrize("preset", ["seed", "selective-tuning"])
def test_layers_seed_keeps_every_backbone_batchnorm_in_inference_mode(preset):
    config = resolve({"task": "layers", "search": {"preset": preset}})
    assert config.model.batchnorm == "eval"
    other = {"backbone": "torchvision:vgg16"}  # the seed ran several backbones: any
    assert (
        resolve({"task": "layers", "model": other, "search": {"preset": preset}}).model.batchnorm
        == "eval"
    )
    mine = {"task": "layers", "model": {"batchnorm": "train"}, "search": {"preset": preset}}
    assert resolve(mine).model.batchnorm == "train"  # the user's value wins
    assert resolve({"task": "layers"}).model.batchnorm == "frozen_eval"


@pytest.mark.parametrize("preset", ["seed", "moevoprune"])
def test_prune_seed_is_imagenet_resnet50_and_user_values_win(preset):
    config = resolve({"task": "prune", "search": {"preset": preset}})
    assert config.model.backbone == "torchvision:resnet50" and config.model.weights == "DEFAULT"
    assert (config.fitness.hidden, config.fitness.batch_size, config.fitness.epochs) == (
        512,
        32,
        600,
    )
    again = resolve(yaml.safe_load(config.to_yaml()))  # resolving twice changes nothing
    assert again.to_dict() == config.to_dict()
    mine = resolve({"task": "prune", "model": {"weights": "none"}, "search": {"preset": preset}})
    assert (mine.model.backbone, mine.model.weights) == ("torchvision:resnet50", "none")


def test_seed_weights_go_with_the_seed_backbone():
    model = {"backbone": "builtin:small_cnn", "channels": "keep"}
    seed = resolve({"task": "prune", "model": model, "search": {"preset": "seed"}})
    assert (seed.model.backbone, seed.model.weights) == ("builtin:small_cnn", "none")
    hparams = {"task": "hparams", "model": model, "search": {"preset": "seed"}}
    assert resolve(hparams).model.se_blocks  # the rest of the seed still applies


def test_named_preset_on_another_backbone_is_the_seeds_search_alone():
    model = {"backbone": "builtin:small_cnn"}
    config = resolve({"task": "hparams", "model": model, "search": {"preset": "tl-hparams"}})
    assert config.search.operators.crossover["name"] == "two_point"
    assert not config.model.se_blocks and config.task.genes.kept == (1, None)
    named = resolve({"task": "hparams", "search": {"preset": "tl-hparams"}})
    assert named.model.backbone == "torchvision:densenet121" and named.model.se_blocks


@pytest.mark.parametrize(
    ("search", "elitism"),
    [
        ({"preset": "seed"}, 12),  # the seed's 24 / 2
        ({"preset": "seed", "population": 16}, 8),  # half of the population used, not 12
        ({"preset": "seed", "population": 16, "elitism": 3}, 3),  # the user's value wins
        ({"preset": "genetic-ae", "population": 7}, 4),
    ],
)
def test_a_presets_elitism_follows_the_population_used(search, elitism):
    task = "mixed_sphere" if search["preset"] == "genetic-ae" else {"name": "onemax", "length": 20}
    config = resolve({"task": task, "search": search})
    assert config.search.elitism == elitism
