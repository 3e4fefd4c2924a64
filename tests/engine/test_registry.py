"""Registries: discovery, "did you mean", parameter validation, genome-kind checks."""

import numpy as np
import pytest

from evotune.engine.operators import CROSSOVER, MUTATION, SELECTION
from evotune.engine.registry import Registry
from evotune.engine.spaces import BinarySpace
from evotune.errors import UserError


def test_names_with_pattern():
    """names() filters by a shell-style pattern and returns sorted names."""
    assert CROSSOVER.names("*point") == ["one_point", "two_point"]
    assert MUTATION.names("*flip") == ["bit_flip", "seed_flip"]
    assert SELECTION.names() == ["roulette", "tournament", "truncation"]
    assert CROSSOVER.names("nothing*") == []


def test_unknown_name_suggests_and_lists():
    """An unknown name says where, suggests the closest name and lists all of them."""
    with pytest.raises(UserError) as info:
        CROSSOVER.build("unifrom", "ga.crossover")
    message = str(info.value)
    assert message.startswith("ga.crossover: unknown crossover 'unifrom'")
    assert "did you mean 'uniform'?" in message
    assert "one_point, random_pairs, sbx, sequential, two_point, uniform" in message


def test_unknown_name_without_close_match_has_no_suggestion():
    """A name far from every entry gets the list but no suggestion."""
    with pytest.raises(UserError) as info:
        SELECTION.get("zzzzzz")
    assert "did you mean" not in str(info.value) and "tournament" in str(info.value)


def test_unknown_parameter_suggests_and_lists_parameters():
    """An unknown key names its path, the closest parameter and all parameters."""
    with pytest.raises(UserError) as info:
        CROSSOVER.build({"name": "uniform", "swapp": 0.3}, "ga.crossover")
    message = str(info.value)
    assert message.startswith("ga.crossover.swapp: unknown parameter for 'uniform'")
    assert "did you mean 'swap'?" in message
    assert "its parameters: prob, swap" in message


def test_parameter_on_operator_without_parameters():
    """An operator with no parameters says so."""
    with pytest.raises(UserError, match="its parameters: none"):
        CROSSOVER.build({"name": "sequential", "cut": 3}, "c")


@pytest.mark.parametrize(
    "registry, spec, path",
    [
        (CROSSOVER, {"name": "uniform", "swap": 1.5}, "ga.op.swap: "),
        (SELECTION, {"name": "tournament", "k": 0}, "ga.op.k: "),
        (MUTATION, {"name": "bit_flip", "rate": -0.1}, "ga.op.rate: "),
        (CROSSOVER, {"name": "sbx", "eta": 0}, "ga.op.eta: "),
        (SELECTION, {"name": "tournament", "k": "two"}, "ga.op.k: "),
    ],
)
def test_out_of_range_or_mistyped_value_rejected_with_key_path(registry, spec, path):
    """Values outside their range (or of the wrong type) are rejected, naming the key path."""
    with pytest.raises(UserError) as info:
        registry.build(spec, "ga.op")
    assert str(info.value).startswith(path)
    bad = [v for k, v in spec.items() if k != "name"][0]
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize(
    "registry, name, kind",
    [
        (CROSSOVER, "sbx", "binary"),
        (MUTATION, "bit_flip", "real"),
        (MUTATION, "zero_out", "binary"),
    ],
)
def test_operator_on_wrong_genome_kind_rejected(registry, name, kind):
    """An operator declared for other genome kinds cannot be built for this one."""
    with pytest.raises(UserError) as info:
        registry.build(name, "ga.op", kind=kind)
    assert str(info.value).startswith("ga.op: ")
    assert f"this task's genome is {kind}" in str(info.value)


def test_operator_on_right_or_any_kind_accepted():
    """Declared kinds pass; operators without declared kinds work on any genome."""
    assert callable(CROSSOVER.build("sbx", "c", kind="real"))
    assert callable(CROSSOVER.build("sbx", "c", kind="mixed"))
    assert callable(CROSSOVER.build("uniform", "c", kind="binary"))
    assert callable(MUTATION.build("reset", "m", kind="mixed"))


def test_build_binds_parameters():
    """build() returns the function with defaults and given (coerced) values bound."""
    fn = MUTATION.build({"name": "bit_flip", "rate": 1.0}, "m")
    assert fn.func is MUTATION.get("bit_flip").fn and fn.keywords == {"rate": 1.0}
    genomes = np.zeros((3, 7), dtype=np.uint8)
    flipped = fn(genomes, np.random.default_rng(0), BinarySpace(7))
    assert flipped.all()  # rate 1.0 really reached the operator
    assert MUTATION.build("bit_flip", "m").keywords == {"rate": None}
    assert SELECTION.build({"name": "tournament", "k": "3"}, "s").keywords == {"k": 3}
    assert CROSSOVER.build({"name": "uniform", "swap": 0.2}, "c").keywords == {
        "prob": 1.0,
        "swap": 0.2,
    }


def test_bad_spec_shape_rejected():
    """A spec that is neither a name nor a mapping with 'name' is an error naming the place."""
    with pytest.raises(UserError, match="^ga.crossover: expected a name or a mapping"):
        CROSSOVER.build({"swap": 0.5}, "ga.crossover")
    with pytest.raises(UserError, match="got 3"):
        CROSSOVER.build(3, "ga.crossover")


def test_register_twice_rejected_and_keyword_only_params_recorded():
    """A name registers once; only keyword-only arguments count as parameters."""
    registry = Registry("demo")

    @registry.register(kinds=("binary",))
    def op(x, rng, *, alpha: float = 1.0, beta: int = 2):
        """First line.

        More text."""
        return x

    entry = registry.get("op")
    assert entry.params == {"alpha": 1.0, "beta": 2}
    assert entry.doc == "First line." and entry.kinds == ("binary",)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("op")(op)


def test_algorithms_are_one_registry_that_config_and_cli_read(capsys):
    from evotune.cli import main
    from evotune.config import resolve
    from evotune.engine import ALGORITHMS

    assert ALGORITHMS.names() == ["annealing", "ga", "nsga2", "optuna_nsga2", "random", "tpe"]
    with pytest.raises(
        UserError, match=r"search.algorithm: unknown algorithm 'nsga' \(did you mean 'nsga2'\?\)"
    ):
        resolve({"task": "onemax", "search": {"algorithm": "nsga"}})
    with pytest.raises(UserError, match=r"search.compare: unknown algorithm 'anealing'"):
        resolve({"task": "onemax", "search": {"compare": ["ga", "anealing"]}})
    assert main(["list", "algorithms", "*nsga2"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["nsga2", "optuna_nsga2"]
    assert all("[many objectives]" in line for line in listed)
