"""`model.backbone: python:MODULE:FACTORY`: a user's own network, from their own code.

MODULE is a dotted module (importable: installed or on PYTHONPATH) or a path to a .py
file (relative paths are from the current directory, like every path of a config);
`FACTORY(**model.args)` must return an `nn.Module`. `model.weights` (a local file) is
loaded into it, read with weights_only=True, from inside the usual wrappers and with
DataParallel/torch.compile prefixes stripped; mismatched keys are errors unless
`model.strict: false`. Its classifier (`model.classifier`, else the last nn.Linear the
forward pass calls) is removed, and the rest is cut into stages by `forward_split.py`.
Each decision is recorded in the backbone's notes (console, model description).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from evotune.errors import UserError, did_you_mean
from evotune.models.forward_split import split_forward
from evotune.models.kinds import BackboneKind, BackboneRequest, register_kind
from evotune.models.stages import Backbone
from evotune.models.weights import is_file_spec, load_into, read_weights
from evotune.usercode import remember_file_module

USAGE = "python:MODULE:FACTORY (MODULE: a dotted module name or a path to a .py file)"
_FILES: dict[tuple[Path, int], ModuleType] = {}  # a file is executed once per version


@dataclass(frozen=True)
class FactorySpec:
    module: str
    factory: str

    @classmethod
    def parse(cls, name: str) -> FactorySpec:
        """'pkg.models:resnet' or 'models/net.py:resnet' (the factory after the last ':',
        so that a Windows drive letter stays in the path)."""
        module, sep, factory = name.rpartition(":")
        if not sep or not module or not factory.isidentifier():
            raise ValueError(f"expected {USAGE}, got 'python:{name}'")
        return cls(module, factory)

    @property
    def is_file(self) -> bool:
        return self.module.endswith(".py") or "/" in self.module or "\\" in self.module


def check_name(name: str) -> None:
    FactorySpec.parse(name)


def portable(backbone: str) -> str:
    """The backbone as a checkpoint records it: a module file by its absolute path, so
    that `file:` reloads it from any directory."""
    spec = FactorySpec.parse(backbone.partition(":")[2])
    if not spec.is_file:
        return backbone
    return f"python:{Path(spec.module).resolve()}:{spec.factory}"


def fingerprint(name: str) -> str:
    """A hash of the module's source file: a forward edited since features were cached
    must not reuse them (the tensors alone would not tell)."""
    path = getattr(load_module(FactorySpec.parse(name)), "__file__", None)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else ""


# -- importing the user's code ----------------------------------------------------------


def load_module(spec: FactorySpec) -> ModuleType:
    return _load_file(Path(spec.module)) if spec.is_file else _import(spec.module)


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and (name == err.name or name.startswith(err.name + ".")):
            raise UserError(
                f"model.backbone: no module named {name!r}: install it, add its folder to "
                "PYTHONPATH, or give the path to its .py file (python:path/to/file.py:FACTORY)"
            ) from None
        raise UserError(f"model.backbone: importing {name} failed: {_error(err)}") from None
    except Exception as err:  # noqa: BLE001 - the user's module raised while importing
        raise UserError(f"model.backbone: importing {name} raised {_error(err)}") from None


def _load_file(path: Path) -> ModuleType:
    resolved = path.resolve()
    if not resolved.is_file():
        raise UserError(
            f"model.backbone: python module file not found: {path} (relative paths are "
            f"from the current directory, {Path.cwd()})"
        )
    key = (resolved, resolved.stat().st_mtime_ns)
    if key not in _FILES:
        _FILES[key] = _execute(resolved, path)
    return _FILES[key]


def _execute(resolved: Path, shown: Path) -> ModuleType:
    """Run the file as a module registered in sys.modules (its classes then pickle and
    copy like any others), with its folder importable so that it can import siblings."""
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
    stem = re.sub(r"\W", "_", resolved.stem)
    name = f"evotune_user_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(resolved.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - a bug or a missing import in the user's file
        del sys.modules[name]
        raise UserError(f"model.backbone: importing {shown} raised {_error(err)}") from None
    finally:
        sys.path.remove(str(resolved.parent))
    remember_file_module(module)  # Ray ships its classes by value: workers cannot import it
    return module


def _error(err: BaseException) -> str:
    """'TypeError: message (file.py:12)': the user's frame nearest the error."""
    first = (str(err).strip().splitlines() or [""])[0]
    if isinstance(err, SyntaxError):
        return f"SyntaxError: {err.msg} ({Path(err.filename or '?').name}:{err.lineno})"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "/evotune/" not in f.filename]
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {first}{where}"


def get_factory(spec: FactorySpec) -> Callable[..., Any]:
    module = load_module(spec)
    factory = getattr(module, spec.factory, None)
    if not callable(factory):
        own = [n for n, v in vars(module).items() if _defined_in(v, module) and n[0] != "_"]
        raise UserError(
            f"model.backbone: {spec.module} has no factory {spec.factory!r}"
            f"{did_you_mean(spec.factory, own)}; its functions and classes: "
            f"{', '.join(own) or 'none'}"
        )
    return factory


def _defined_in(value: Any, module: ModuleType) -> bool:
    return callable(value) and getattr(value, "__module__", None) == module.__name__


def call_factory(spec: FactorySpec, args: dict[str, Any], label: str) -> nn.Module:
    factory = get_factory(spec)
    try:
        model = factory(**args)
    except Exception as err:  # noqa: BLE001 - the user's code: report it as bad input
        raise UserError(
            f"model.backbone: {label} raised {_error(err)} when called with "
            f"model.args {args!r}; expected {spec.factory}(**model.args) -> nn.Module"
        ) from None
    if not isinstance(model, nn.Module):
        raise UserError(
            f"model.backbone: {label} returned {_short(model)} ({type(model).__name__}); "
            "expected a torch.nn.Module"
        )
    return model


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- the model: input, classifier, weights ---------------------------------------------


def input_channels(model: nn.Module, request: BackboneRequest, label: str) -> int:
    """The channels its first layer with weights takes (in registration order), else
    what the adapter hands over; `channels: keep` must hand over exactly that."""
    first = next(
        (m for m in model.modules() if next(m.parameters(recurse=False), None) is not None),
        None,
    )
    channels = int(getattr(first, "in_channels", request.in_channels))
    if request.config.channels == "keep" and channels != request.in_channels:
        raise UserError(
            f"model.channels: {label} takes {channels} input channels; the data has "
            f"{request.in_channels} with channels: keep (use channels: adapt or repeat)"
        )
    return channels


def calls(model: nn.Module, x: torch.Tensor, label: str) -> list[str]:
    """The module paths its forward calls on a dry batch, in order, repeats included."""
    order: list[str] = []
    hooks = [
        m.register_forward_pre_hook(lambda _m, _a, n=n: order.append(n))
        for n, m in model.named_modules()
        if n
    ]
    try:
        with torch.no_grad():
            model.eval()(x)
    except Exception as err:  # noqa: BLE001 - the user's forward on an input it refuses
        raise UserError(
            f"model: {label} cannot take a {tuple(x.shape[1:])} input: {_error(err)}. Set "
            "model.resize to the [height, width] it expects"
        ) from None
    finally:
        for hook in hooks:
            hook.remove()
    return order


def find_classifier(
    model: nn.Module, order: list[str], requested: str | None, label: str
) -> tuple[str, str]:
    """(path of the classifier, how it was found), from the calls of a dry forward."""
    if requested is not None:
        found, how = _named(model, requested, label), "model.classifier"
    else:
        found, how = _last_linear(model, order, label), "the last nn.Linear its forward calls"
    if order.count(found) != 1:
        raise UserError(
            f"model.classifier: {found!r} is called {order.count(found)} times by "
            f"{type(model).__name__}.forward on a dry batch; expected exactly once"
        )
    return found, how


def _named(model: nn.Module, requested: str, label: str) -> str:
    names = [n for n, _ in model.named_modules() if n]
    if requested not in names:
        raise UserError(
            f"model.classifier: {label} has no module {requested!r}"
            f"{did_you_mean(requested, names)}; its top-level modules: "
            f"{', '.join(n for n, _ in model.named_children())}"
        )
    return requested


def _last_linear(model: nn.Module, order: list[str], label: str) -> str:
    modules = dict(model.named_modules())
    linears = [n for n in order if isinstance(modules[n], nn.Linear)]
    if not linears:
        raise UserError(
            f"model.classifier: {type(model).__name__}.forward ({label}) calls no "
            "nn.Linear, so its classifier cannot be found; name it with "
            "model.classifier (e.g. fc, or head.fc)"
        )
    return linears[-1]


def load_weights(model: nn.Module, weights: str, classifier: str, strict: bool, label: str) -> str:
    """Load `weights` into `model` (the classifier's tensors may be missing or differ:
    it is replaced anyway); returns what was loaded, for the notes."""
    state = read_weights(Path(weights))
    problems = load_into(model, state.tensors, weights, optional=[f"{classifier}."], strict=False)
    if problems and strict:
        raise UserError(
            f"model.weights: {weights} does not match {label}: {'; '.join(problems)}. "
            "Set model.strict: false to load only the tensors that match"
        )
    text = f"{label}: weights {weights}: {state.describe()}"
    if problems:
        text += f"; WARNING, not loaded (model.strict: false): {'; '.join(problems)}"
    return text


def _weights_file(weights: str, label: str) -> str | None:
    if weights == "none":
        return None
    if not is_file_spec(weights):
        raise UserError(
            f"model.weights: {label} takes none or a local weights file "
            f"(.pth/.pt/.th/.safetensors); got {weights!r}"
        )
    return weights


def _describe_module(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"Linear {module.in_features} -> {module.out_features}"
    return type(module).__name__


def create_python(request: BackboneRequest) -> Backbone:
    config = request.config
    label = f"python:{config.name}"
    spec = FactorySpec.parse(config.name)
    weights = _weights_file(config.weights, label)
    model = call_factory(spec, config.args, label)
    x = torch.zeros(1, input_channels(model, request, label), *request.size)
    classifier, how = find_classifier(model, calls(model, x, label), config.classifier, label)
    notes = [load_weights(model, weights, classifier, config.strict, label)] if weights else []
    kind = _describe_module(model.get_submodule(classifier))
    notes.append(f"{label}: classifier {classifier!r} ({kind}; {how}) removed")
    backbone = split_forward(model.eval(), classifier, x, label)
    backbone.notes[:0] = notes
    return backbone


register_kind(
    BackboneKind(
        "python",
        "python:<module or file.py>:<factory>",
        create=create_python,
        check_name=check_name,
        portable=portable,
        options=("args", "classifier", "strict"),
        fingerprint=fingerprint,
    )
)
