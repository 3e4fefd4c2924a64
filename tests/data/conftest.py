"""Shared fixtures of the data tests; data writers live in datagen.py."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    # Never touch the user's ~/.cache from a test (nor the test's own data folder).
    monkeypatch.setenv("EVOTUNE_CACHE", str(tmp_path_factory.mktemp("evotune-cache")))
