"""scikit-learn's bundled 8x8 handwritten digits: the embedded default (no download)."""

from __future__ import annotations

import numpy as np

from evotune.data.config import DataConfig
from evotune.data.raw import Examples, Loaded


def load_digits_source(config: DataConfig) -> Loaded:
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    bunch = load_digits()
    # Pixel values are 0..16 (counts of set pixels in 4x4 blocks of the 32x32 original).
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    return Loaded(
        data=Examples(x=x, labels=bunch.target.astype(np.int64)),
        classes=[str(int(name)) for name in bunch.target_names],
        origin="sklearn digits",
    )
