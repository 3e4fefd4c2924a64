"""Datasets for evotune: IDX, image folders, npz, sklearn digits (the embedded default)
and audio as log-mel spectrograms, split into train / validation / test CPU tensors.

```python
from evotune.data import DataConfig, load_data
dataset = load_data(DataConfig(source="idx", path="data/fashion-mnist"))
dataset.train.x.shape  # (N, 1, 28, 28), float32 in [0, 1]
```
"""

from evotune.data.config import AudioConfig, DataConfig, LabelConfig, SplitConfig
from evotune.data.dataset import Dataset, Split
from evotune.data.load import SOURCES, load_data

__all__ = [
    "SOURCES",
    "AudioConfig",
    "DataConfig",
    "Dataset",
    "LabelConfig",
    "Split",
    "SplitConfig",
    "load_data",
]
