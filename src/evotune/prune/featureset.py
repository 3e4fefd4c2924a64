"""What the `prune` task trains and scores on: the frozen backbone's features of the
in-distribution splits and of the OOD inputs, extracted once (and cached on disk)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evotune.data import Dataset
from evotune.errors import UserError
from evotune.models import TransferNet
from evotune.prune.oodset import ood_inputs
from evotune.train.features import cached_features, extract_features


@dataclass
class FeatureSet:
    train_x: torch.Tensor  # (N, D) features
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    ood_val: torch.Tensor | None  # (M, D) OOD features, sized like the validation set
    ood_test: torch.Tensor | None  # sized like the test set
    n_classes: int
    from_cache: bool = False
    groups: np.ndarray | None = None  # split.group_by per pooled (train, val) row

    @property
    def n_features(self) -> int:
        return int(self.train_x.shape[1])

    def to(self, device: torch.device) -> FeatureSet:
        moved = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()
        }
        return FeatureSet(**moved)

    def folds(self, k: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(training rows, held-out rows) of each of k stratified folds over the pooled
        training and validation features (rows index `pooled()`). With `split.group_by`
        no group is cut: a speaker held out stays held out in every fold."""
        from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

        labels = self.pooled()[1].cpu().numpy()
        dummy = np.zeros(len(labels))
        if self.groups is None:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            splits = splitter.split(dummy, labels)
        else:
            distinct = len(np.unique(self.groups))
            if distinct < k:
                raise UserError(
                    f"fitness.folds: {k} folds need {k} groups, but split.group_by gives "
                    f"{distinct} in the training and validation data; lower folds"
                )
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            splits = splitter.split(dummy, labels, self.groups)
        return [(torch.from_numpy(a).long(), torch.from_numpy(b).long()) for a, b in splits]

    def pooled(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([self.train_x, self.val_x]), torch.cat([self.train_y, self.val_y])


def build_features(
    net: TransferNet,
    data: Dataset,
    ood: list[Dataset],
    device: torch.device,
    batch_size: int = 256,
    cache: bool = True,
    match_range: bool = True,
) -> FeatureSet:
    """Features of every split and of the OOD inputs, from the cache when it has them."""
    inputs = {"train": data.train.x, "val": data.val.x}
    if data.test is not None:
        inputs["test"] = data.test.x
    if ood:
        n_test = len(data.test) if data.test is not None else 0
        reference = inputs["train"] if match_range else None
        inputs["ood_val"], inputs["ood_test"] = ood_inputs(
            ood, data.input_shape, len(data.val), n_test, reference
        )
    net = net.to(device)
    if cache:
        feats, hit = cached_features(net, inputs, device, batch_size)
    else:
        feats = {k: extract_features(net, v, device, batch_size) for k, v in inputs.items()}
        hit = False
    test = data.test
    return FeatureSet(
        train_x=feats["train"],
        train_y=data.train.y,
        val_x=feats["val"],
        val_y=data.val.y,
        test_x=feats.get("test"),
        test_y=None if test is None else test.y,
        ood_val=feats.get("ood_val"),
        ood_test=feats.get("ood_test") if test is not None and len(test) else None,
        n_classes=data.num_classes,
        from_cache=hit,
        groups=_pooled_groups(data),
    )


def _pooled_groups(data: Dataset) -> np.ndarray | None:
    """The group of every training then validation example, or None without group_by."""
    train, val = data.train.groups, data.val.groups
    if train is None or val is None:
        return None
    return np.asarray([*train, *val])
