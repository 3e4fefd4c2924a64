"""Datasets for evotune: IDX, image folders, npz, sklearn digits (the embedded default)
and audio as log-mel spectrograms, split into train / validation / test CPU tensors, or,
for image folders and audio larger than `data.memory_gb`, read from disk batch by batch.

```python
from evotune.data import DataConfig, load_data
dataset = load_data(DataConfig(source="idx", path="data/fashion-mnist"))
dataset.train.x.shape  # (N, 1, 28, 28), float32 in [0, 1]
```
"""

from evotune.data.config import AudioConfig, DataConfig, LabelConfig, SplitConfig
from evotune.data.dataset import Batches, Dataset, Split
from evotune.data.load import SOURCES, load_data
from evotune.data.stream import StreamedSplit

__all__ = [
    "SOURCES",
    "AudioConfig",
    "Batches",
    "DataConfig",
    "Dataset",
    "LabelConfig",
    "Split",
    "SplitConfig",
    "StreamedSplit",
    "load_data",
]
