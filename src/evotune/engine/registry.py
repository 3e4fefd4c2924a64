"""Named registries of callables a config picks by name, with discovery and "did you mean".

`Registry.build(spec)` turns a config entry (a name, or a mapping with `name` and the
function's own keyword arguments) into a callable with those arguments bound, after
checking them against the function's signature: unknown keys and wrong types are
reported with the key and what was expected.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from evotune.errors import UserError, did_you_mean


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable[..., Any]
    kinds: tuple[str, ...] = ()  # genome kinds it works on; empty = any
    doc: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # keyword-only params and defaults
    traits: dict[str, str] = field(default_factory=dict)  # what callers must know of it


class Registry:
    """A name -> function table for one family (e.g. "crossover")."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str | None = None,
        kinds: tuple[str, ...] = (),
        traits: dict[str, str] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            key = name or fn.__name__
            if key in self._entries:
                raise ValueError(f"{self.family} {key!r} is registered twice")
            doc = (inspect.getdoc(fn) or "").split("\n")[0]
            params = _keyword_params(fn)
            self._entries[key] = Entry(key, fn, kinds, doc, params, dict(traits or {}))
            return fn

        return decorate

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style pattern, e.g. `names("*point")`."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def get(self, name: str, where: str | None = None) -> Entry:
        if name not in self._entries:
            place = f"{where}: " if where else ""
            raise UserError(
                f"{place}unknown {self.family} {name!r}{did_you_mean(name, self._entries)}; "
                f"choose one of {', '.join(self.names())}"
            )
        return self._entries[name]

    def resolve(
        self, spec: str | Mapping[str, Any], where: str, kind: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Check a config spec: returns (name, every keyword argument with its value).
        `where` is the config path, for errors; `kind` the genome kind, checked against
        what the function supports."""
        name, params = split_spec(spec, where)
        entry = self.get(name, where)
        if kind is not None and entry.kinds and kind not in entry.kinds:
            raise UserError(
                f"{where}: {self.family} {name!r} works on {' or '.join(entry.kinds)} genomes, "
                f"but this task's genome is {kind}"
            )
        return name, validate_params(entry, params, where)

    def build(
        self, spec: str | Mapping[str, Any], where: str, kind: str | None = None
    ) -> Callable[..., Any]:
        """The function named by `spec`, with its parameters bound."""
        name, bound = self.resolve(spec, where, kind)
        return functools.partial(self._entries[name].fn, **bound)


def split_spec(spec: str | Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    """`"name"` or `{"name": ..., **params}` -> (name, params)."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return spec["name"], {k: v for k, v in spec.items() if k != "name"}
    raise UserError(
        f"{where}: expected a name or a mapping with a 'name' key, got {spec!r} "
        f"({type(spec).__name__})"
    )


def _keyword_params(fn: Callable[..., Any]) -> dict[str, Any]:
    sig = inspect.signature(fn)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def validate_params(entry: Entry, params: dict[str, Any], where: str) -> dict[str, Any]:
    """Check `params` against the function's keyword-only arguments and their types."""
    for key in params:
        if key not in entry.params:
            allowed = ", ".join(entry.params) or "none"
            raise UserError(
                f"{where}.{key}: unknown parameter for {entry.name!r}"
                f"{did_you_mean(key, entry.params)}; its parameters: {allowed}"
            )
    hints = inspect.get_annotations(entry.fn, eval_str=True)
    fields = {
        k: (hints.get(k, Any), ... if d is inspect.Parameter.empty else d)
        for k, d in entry.params.items()
    }
    model = pydantic.create_model(
        f"{entry.name}_params", __config__=pydantic.ConfigDict(strict=False), **fields
    )
    try:
        checked = model(**params)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise UserError(
            f"{where}.{key}: {first['msg'].lower()}, got {first.get('input')!r}"
        ) from None
    return {k: getattr(checked, k) for k in entry.params}
