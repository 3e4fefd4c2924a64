"""Typed configuration: load YAML safely, apply `--set` overrides, apply presets, validate.

Sections: `task` (a name, or a mapping with `name` and the task's options), `data`,
`model`, `search`, `fitness`, `executor`, `output`. The task decides which models
validate `task`, `fitness`, `data` and `model`. Every error names the key path and
what was expected, and is raised as `UserError` (exit code 2 in the CLI).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from evotune.engine import ALGORITHMS
from evotune.engine.operators import CROSSOVER, MUTATION, SELECTION
from evotune.engine.presets import apply_preset, get_preset
from evotune.engine.registry import Registry, split_spec
from evotune.errors import UserError, did_you_mean
from evotune.sections import Section
from evotune.tasks import Task, get_task

OperatorSpec = str | dict[str, Any]

DEFAULT_OPERATORS: dict[str, dict[str, str]] = {
    "binary": {"selection": "tournament", "crossover": "uniform", "mutation": "bit_flip"},
    "real": {"selection": "tournament", "crossover": "sbx", "mutation": "polynomial"},
    "mixed": {"selection": "tournament", "crossover": "uniform", "mutation": "reset"},
}
REGISTRIES: dict[str, Registry] = {
    "selection": SELECTION,
    "crossover": CROSSOVER,
    "mutation": MUTATION,
}


def _algorithm_name(name: str) -> str:
    if name not in ALGORITHMS.names():
        raise ValueError(
            f"unknown algorithm {name!r}{did_you_mean(name, ALGORITHMS.names())}; "
            f"choose one of {', '.join(ALGORITHMS.names())}"
        )
    return name


class OperatorsConfig(Section):
    selection: OperatorSpec | None = None
    crossover: OperatorSpec | None = None
    mutation: OperatorSpec | None = None


class SearchConfig(Section):
    algorithm: str | None = Field(
        None,
        description="default: ga for one objective, nsga2 for several; tpe and "
        "optuna_nsga2 are Optuna's samplers (pip install 'evotune[optuna]'); "
        "`evotune list algorithms` shows them all",
    )
    compare: list[str] | None = Field(
        None,
        min_length=1,
        description="run each algorithm on the same space, budget and seed, into "
        "RUN_DIR/<algorithm>/ (see compare.py)",
    )
    preset: str | None = None
    population: int = Field(24, ge=1)
    generations: int | None = Field(None, ge=1, description="default 20 if no other budget")
    max_evaluations: int | None = Field(None, ge=1)
    max_minutes: float | None = Field(None, gt=0)
    target: float | None = None
    seed: int = Field(0, ge=0)
    elitism: int | None = Field(None, ge=0, description="GA: members kept unchanged")
    temperature: float | None = Field(None, gt=0, description="annealing: start temperature")
    cooling: float = Field(0.95, gt=0, le=1, description="annealing: factor per step")
    operators: OperatorsConfig = OperatorsConfig()

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, name: str | None) -> str | None:
        return name if name is None else _algorithm_name(name)

    @field_validator("compare")
    @classmethod
    def _known_algorithms(cls, names: list[str] | None) -> list[str] | None:
        return names if names is None else [_algorithm_name(n) for n in names]

    @model_validator(mode="after")
    def _budget(self) -> SearchConfig:
        if self.generations is None and self.max_evaluations is None and not self.max_minutes:
            self.generations = 20  # never run unbounded (the first seed's loop never ended)
        if self.elitism is not None and self.elitism >= self.population:
            raise ValueError(
                f"elitism ({self.elitism}) must be smaller than population ({self.population})"
            )
        if self.compare and len(set(self.compare)) != len(self.compare):
            raise ValueError(f"compare: each algorithm once, got {self.compare}")
        return self


class ExecutorConfig(Section):
    kind: Literal["local", "ray"] = "local"
    chunk_size: int | None = Field(
        None, ge=1, description="genomes per evaluation call (null: the task's preference)"
    )
    max_failures: int | None = Field(
        10, ge=1, description="failed evaluations in a row before the run stops (null: never)"
    )
    # Ray only (kind: ray)
    address: str | None = Field(
        None, description="null: start a local Ray; 'auto': join the running cluster; or HOST:PORT"
    )
    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per evaluation task")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per evaluation task (0.5: two per GPU)")
    max_in_flight: int | None = Field(
        None, ge=1, description="evaluation tasks submitted at once (null: as many as there are)"
    )
    max_retries: int = Field(3, ge=0, description="retries of a task whose worker process died")


class OutputConfig(Section):
    dir: str | None = Field(None, description="run directory (default runs/TASK-TIMESTAMP)")
    report: bool = True


class RootConfig(Section):
    task: str | dict[str, Any]
    data: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    search: dict[str, Any] = {}
    fitness: dict[str, Any] = {}
    executor: ExecutorConfig = ExecutorConfig()
    output: OutputConfig = OutputConfig()


@dataclass
class RunConfig:
    """A validated config: the task's own section models plus the shared ones."""

    task_class: type[Task]
    task: Section
    data: Section | None
    model: Section | None
    fitness: Section
    search: SearchConfig
    executor: ExecutorConfig
    output: OutputConfig

    @property
    def task_name(self) -> str:
        return self.task_class.name

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, as written to the run directory's config.yaml."""
        out: dict[str, Any] = {"task": {"name": self.task_name, **self.task.model_dump()}}
        if self.data is not None:
            out["data"] = self.data.model_dump(mode="json")
        if self.model is not None:
            out["model"] = self.model.model_dump(mode="json")
        out["search"] = self.search.model_dump(mode="json")
        out["fitness"] = self.fitness.model_dump(mode="json")
        out["executor"] = self.executor.model_dump(mode="json")
        out["output"] = self.output.model_dump(mode="json")
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---- loading --------------------------------------------------------------------


def load_yaml(path: Path | str) -> dict[str, Any]:
    """Parse a YAML config file safely into a mapping."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err)
        raise UserError(f"{path}: invalid YAML{line}: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    if not isinstance(raw, dict):
        raise UserError(
            f"{path}: expected a mapping of sections (task, search, ...), got {type(raw).__name__}"
        )
    return raw


def apply_overrides(raw: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` strings (values parsed as YAML) to a copy of `raw`."""
    out = _deep_copy(raw)
    for text in assignments:
        key, sep, value_text = text.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key.path=value, got {text!r}")
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else None
        except yaml.YAMLError:
            raise UserError(f"--set {key}: cannot parse value {value_text!r}") from None
        _assign(out, key.strip().split("."), value)
    return out


def _assign(node: dict[str, Any], path: list[str], value: Any) -> None:
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        if isinstance(child, str):  # `task: onemax` + `--set task.length=50`
            child = {"name": child}
        elif child is None:
            child = {}
        elif not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise UserError(f"--set {'.'.join(path)}: {where} is {child!r}, not a section")
        node[part] = child
        node = child
    node[path[-1]] = value


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj


def load_config(path: Path | str, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a config file."""
    return resolve(apply_overrides(load_yaml(path), overrides or []))


def resolve(raw: dict[str, Any]) -> RunConfig:
    """Validate a raw config mapping into a RunConfig (presets applied, defaults filled)."""
    root = validate_section(RootConfig, raw, "")
    task_name, options = split_spec(root.task, "task")
    task_class = get_task(task_name)
    search_raw = _with_preset(root.search, task_class)
    seed = _seed_sections(task_class, root.search.get("preset"), root.model)
    options = _seed_defaults(seed, "task", options)
    search = validate_section(SearchConfig, search_raw, "search")
    search.operators = _resolve_operators(search, task_class.genome_kind)
    return RunConfig(
        task_class=task_class,
        task=validate_section(task_class.Options, options, "task"),
        data=_optional_section(task_class.Data, root.data, "data", task_name),
        model=_optional_section(
            task_class.Model,
            _seed_defaults(seed, "model", root.model),
            "model",
            task_name,
        ),
        fitness=_with_threads(
            validate_section(
                task_class.Fitness, _seed_defaults(seed, "fitness", root.fitness), "fitness"
            ),
            root.executor,
        ),
        search=search,
        executor=root.executor,
        output=root.output,
    )


def _with_preset(search: dict[str, Any], task_class: type[Task]) -> dict[str, Any]:
    name = search.get("preset")
    if name is None:
        return search
    if not isinstance(name, str):
        raise UserError(f"search.preset: expected a preset name, got {name!r}")
    if name == "seed":
        if task_class.seed_preset is None:
            raise UserError(f"search.preset: task {task_class.name!r} has no seed preset")
        name = task_class.seed_preset
    return apply_preset(search, get_preset(name))


def _seed_sections(
    task_class: type[Task], preset: Any, model: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """The task's `seed_defaults` that apply: with `preset: seed` or the task's own preset
    named (both ask for the seed system), on the seed's backbone or when it fixes none.
    On another backbone `seed` keeps all but the seed's weights (they name the seed
    backbone's), and the named preset none: it then means the seed's search alone."""
    defaults = task_class.seed_defaults
    if preset not in ("seed", task_class.seed_preset):
        return {}
    seed_backbone = defaults.get("model", {}).get("backbone")
    backbone = (model or {}).get("backbone", seed_backbone)
    if seed_backbone is None or backbone == seed_backbone:
        return defaults
    if preset != "seed":
        return {}
    own = {k: v for k, v in defaults["model"].items() if k != "weights"}
    return {**defaults, "model": own}


def _seed_defaults(
    seed: dict[str, dict[str, Any]], section: str, raw: dict[str, Any] | None
) -> dict[str, Any] | None:
    """`raw` over the applicable seed defaults for `section` (`_seed_sections`)."""
    defaults = seed.get(section)
    return _merge(defaults, raw or {}) if defaults else raw


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, mappings merged key by key (a value in `over` wins)."""
    out = dict(base)
    for key, value in over.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _merge(base[key], value) if nested else value
    return out


def _with_threads(fitness: Section, executor: ExecutorConfig) -> Section:
    """`fitness.threads: null` resolved to a number, written into config.yaml, so a
    resumed run, a Ray worker and an export all use the same count: half the cores (at
    most 8: no oversubscription on a shared machine), or a Ray task's CPUs."""
    if "threads" in type(fitness).model_fields and fitness.threads is None:
        cores = max(1, min((os.cpu_count() or 2) // 2, 8))
        fitness.threads = max(1, int(executor.num_cpus)) if executor.kind == "ray" else cores
    return fitness


def _resolve_operators(search: SearchConfig, genome_kind: str) -> OperatorsConfig:
    """Fill default operators and write each as a full {name, params} mapping."""
    defaults = DEFAULT_OPERATORS[genome_kind]
    resolved = {}
    for family, registry in REGISTRIES.items():
        where = f"search.operators.{family}"
        spec = getattr(search.operators, family) or defaults[family]
        name, params = registry.resolve(spec, where, genome_kind)
        resolved[family] = {"name": name, **params}
    return OperatorsConfig(**resolved)


def _optional_section(
    model: type[Section] | None, raw: dict[str, Any] | None, where: str, task: str
) -> Section | None:
    if model is None:
        if raw:
            raise UserError(f"{where}: task {task!r} takes no {where} section")
        return None
    return validate_section(model, raw or {}, where)


def validate_section(model: type[BaseModel], raw: Any, where: str) -> Any:
    """model(**raw), with pydantic's errors turned into one UserError naming the keys."""
    if not isinstance(raw, dict):
        raise UserError(
            f"{where or 'config'}: expected a mapping, got {raw!r} ({type(raw).__name__})"
        )
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        lines = [_describe_error(model, err_item, where) for err_item in err.errors()[:10]]
        raise UserError("invalid config:\n  " + "\n  ".join(lines)) from None


def _describe_error(model: type[BaseModel], error: dict[str, Any], where: str) -> str:
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "union["))]
    key = ".".join(filter(None, [where, *loc]))
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        return f"{key}: unknown key{did_you_mean(loc[-1], allowed)}; allowed: {', '.join(allowed)}"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    if error["type"] == "value_error":  # our own validators: the message says it all
        return f"{key or 'config'}: {str(error['ctx']['error'])}"
    got = error.get("input")
    shown = f"{got!r} ({type(got).__name__})" if not isinstance(got, dict) else "a mapping"
    message = error["msg"][0].lower() + error["msg"][1:]
    return f"{key or where or 'config'}: {message}, got {shown}"


def _allowed_keys(model: type[BaseModel], path: list[str]) -> list[str]:
    """Field names of the (nested) model at `path`."""
    for part in path:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [field.alias or name for name, field in model.model_fields.items()]
