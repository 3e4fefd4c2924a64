"""Task `weights`: the weights themselves, by GA instead of (or beside) gradients.

`model.kind: autoencoder` (default) reproduces the genetic autoencoder (SEEDS.md §4):
a tied autoencoder (default 784-500-250-100-50, no bias) trained layer by layer. Each
layer is one stage of the run (staged.py): one GA whose genome is that layer's weight
matrix, its best frozen before the next layer's GA starts. Then an RBF SVM learns the
classes from the codes of the whole training data; summary.json reports test RMSE and
test accuracy. `model.kind: module` evolves every parameter of a small torch module
(an MLP, or your own factory) as one genome, fitness minus loss or accuracy.

Modes: `ga` (no gradients), `ga_assisted` (the kept members also take
`fitness.steps_per_generation` gradient steps each generation and carry the new weights:
a Lamarckian `refine` of the GA's elites), and the gradient baselines `sgd` (all
layers end to end) and `layerwise_sgd` (layer by layer, as the GA).

A population is one tensor and all its members are evaluated in one batched
computation (train/popnets.py). The training data is the train and validation splits
together (nothing here needs a validation split); the test split is held out.
"""

from __future__ import annotations

from typing import Any

from evotune.tasks.weights_ae import AutoencoderTask
from evotune.tasks.weights_base import WeightsBase
from evotune.tasks.weights_module import ModuleTask


class WeightsTask(WeightsBase):
    """The registered task: builds the kind that `model.kind` names."""

    @classmethod
    def from_config(cls, config: Any) -> WeightsBase:
        kind = ModuleTask if config.model.kind == "module" else AutoencoderTask
        return kind.from_config(config)
