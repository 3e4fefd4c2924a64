"""Where evotune keeps files between runs (pretrained demo backbones, spectrograms)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """`$EVOTUNE_CACHE/<kind>`, else `$XDG_CACHE_HOME/evotune/<kind>`, else
    `~/.cache/evotune/<kind>`; created on first use."""
    root = os.environ.get("EVOTUNE_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "evotune"
    folder = base / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder
