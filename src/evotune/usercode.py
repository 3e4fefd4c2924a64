"""Python modules evotune executes from files a config names (`python:file.py:FACTORY`).

Such a module is registered in sys.modules under a name that evotune makes up, which
no other process can import. An executor that ships objects to other processes (Ray)
must therefore send the classes of these modules by value: `file_modules()` lists
them. A neutral module: models register here, executors read, neither imports the other.
"""

from __future__ import annotations

from types import ModuleType

_FILE_MODULES: dict[str, ModuleType] = {}


def remember_file_module(module: ModuleType) -> None:
    _FILE_MODULES[module.__name__] = module


def file_modules() -> list[ModuleType]:
    return list(_FILE_MODULES.values())
