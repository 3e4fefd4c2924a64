"""TransferNet: adapter -> stages -> pool -> head, with per-gene freezing.

The adapter is not a stage: `forward_stages(h, 0, k)` takes the adapter's output.
Stages are the backbone's safe cut points (each returns one tensor, and none modifies
its input in place), so the output of a frozen prefix can be computed once and cached
(`frozen_prefix()` says how many stages that is under the current freeze mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from evotune.models.genes import LayerGene, Leaf, leaf_table, make_genes
from evotune.models.stages import BackboneStage
from evotune.models.surgery import trace_shapes

BATCHNORM_MODES = ("frozen_eval", "eval", "train")


class TransferNet(nn.Module):
    """A backbone cut into stages between an input adapter and a new classifier head.

    New weights (adapter, head, SE blocks, refitted norms) always train; backbone
    weights train or not per gene (`set_trainable`). With `batchnorm="frozen_eval"`,
    batch-norm layers of frozen genes, and whole stages whose weights are all frozen
    (dropout and stochastic depth included), stay in inference mode even after
    `.train()`, so their running statistics never change. `batchnorm="eval"` (the first
    seed's Keras backbone) does the same and also keeps the batch norms of trainable
    genes in inference mode: no backbone running statistic ever changes, while their
    weight and bias still train where the gene does. `"train"`: plain `.train()`.
    """

    def __init__(
        self,
        adapter: nn.Module,
        stages: list[BackboneStage],
        head: nn.Module,
        *,
        pool: nn.Module,
        feature_dim: int,
        input_shape: tuple[int, int, int],
        granularity: str = "block",
        batchnorm: str = "frozen_eval",
        labels: dict[str, tuple[str, str]] | None = None,
        call_order: list[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if batchnorm not in BATCHNORM_MODES:
            raise ValueError(f"batchnorm: expected one of {BATCHNORM_MODES}, got {batchnorm!r}")
        self.adapter = adapter
        self.stages = nn.ModuleList(s.module for s in stages)
        self.pool = pool
        self.head = head
        self.stage_names = [s.name for s in stages]
        self.stage_groups = [s.group for s in stages]
        self.stage_kinds = [s.kind for s in stages]
        self.feature_dim = feature_dim
        self.input_shape = tuple(input_shape)
        self.batchnorm = batchnorm
        self.granularity = granularity
        self.config: Any = None  # the resolved ModelConfig (set by build_model)
        self.source: dict[str, Any] = {}  # file: backbones: checkpoint, meta, fresh parts
        self.notes: list[str] = []  # what building it decided (weights found, classifier cut)
        self._eval_bn: list[nn.Module] = self._backbone_batchnorms() if batchnorm == "eval" else []
        self._frozen_stages: list[int] = []
        order = self._forward_order() if call_order is None else call_order
        self._leaves: list[Leaf] = leaf_table(
            self.stages, self.stage_names, self.stage_groups, self.stage_kinds, order, labels
        )
        self.genes: list[LayerGene] = make_genes(self._leaves, self, granularity)

    # -- forward ---------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features, (N, feature_dim): the head's input."""
        return self.pool(self.forward_stages(self.adapter(x), 0, len(self.stages)))

    def forward_stages(
        self, h: torch.Tensor, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """Run stages[start:stop]; for start=0, `h` is the adapter's output."""
        for stage in self.stages[start:stop]:
            h = stage(h)
        return h

    def _forward_order(self) -> list[nn.Module]:
        """Backbone modules in the order a dry forward pass first calls them."""
        was_training = self.training
        try:
            self.eval()
            device = next(self.parameters()).device
            with torch.no_grad():
                x = self.adapter(torch.zeros(1, *self.input_shape, device=device))
            return trace_shapes(list(self.stages), x)[1]
        finally:
            self.train(was_training)

    # -- genes and freezing ------------------------------------------------------------

    def genes_for(self, granularity: str) -> list[LayerGene]:
        """The gene list at another granularity (the net's own is `genes`)."""
        return make_genes(self._leaves, self, granularity)

    def first_stage_of_gene(self, index: int) -> int:
        return self.genes[index].stage

    @property
    def n_blocks(self) -> int:
        """Blocks in the backbone: the unit `truncate` counts."""
        return sum(kind == "block" for kind in self.stage_kinds)

    def set_trainable(self, mask: Sequence[bool], adapter: bool = True) -> int:
        """Train the genes where mask is true, freeze the others; returns the number of
        trainable parameters (adapter, head and new modules included).

        `adapter=False` also freezes the adapter, which lets a frozen prefix be cached.
        """
        flags = [bool(v) for v in mask]
        if len(flags) != len(self.genes):
            raise ValueError(
                f"freeze mask has {len(flags)} entries; this net has {len(self.genes)} "
                f"{self.granularity} genes"
            )
        params = dict(self.named_parameters())
        for p in self.parameters():
            p.requires_grad_(True)
        for gene, on in zip(self.genes, flags):
            for name in gene.param_names:
                params[name].requires_grad_(on)
        for p in self.adapter.parameters():
            p.requires_grad_(adapter)
        if self.batchnorm == "frozen_eval":
            self._eval_bn = self._batchnorms([g for g, on in zip(self.genes, flags) if not on])
        self._frozen_stages = [
            i
            for i, stage in enumerate(self.stages)
            if self.stage_kinds[i] != "new" and not any(p.requires_grad for p in stage.parameters())
        ]
        self.train(self.training)
        return self.count_trainable()

    def _batchnorms(self, genes: list[LayerGene]) -> list[nn.Module]:
        modules = dict(self.named_modules())
        names = dict.fromkeys(n.rpartition(".")[0] for g in genes for n in g.param_names)
        return [modules[n] for n in names if isinstance(modules[n], _BatchNorm)]

    def _backbone_batchnorms(self) -> list[nn.Module]:
        """Every batch norm of the pretrained backbone: new stages (a refitted norm) are
        fresh, their statistics placeholders, so they train as any new module does."""
        return [
            module
            for stage, kind in zip(self.stages, self.stage_kinds)
            if kind != "new"
            for module in stage.modules()
            if isinstance(module, _BatchNorm)
        ]

    def count_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimizer should see."""
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        if mode and self.batchnorm != "train":
            for index in self._frozen_stages:
                self.stages[index].eval()
            for module in self._eval_bn:
                module.eval()
        return self

    def frozen_prefix(self) -> int:
        """How many leading stages give the same output all through training under the
        current mask (0 when the adapter trains or batch-norm statistics update): their
        output can be computed once, then `forward_stages(cached, k)` continues."""
        if self.batchnorm == "train" or any(p.requires_grad for p in self.adapter.parameters()):
            return 0
        frozen = set(self._frozen_stages)
        count = 0
        while count < len(self.stages) and count in frozen:
            count += 1
        return count

    # -- description -----------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "backbone": getattr(self.config, "backbone", None),
            "stages": len(self.stages),
            "blocks": self.n_blocks,
            "genes": {g: len(self.genes_for(g)) for g in ("leaf", "block", "stage")},
            "feature_dim": self.feature_dim,
            "parameters": sum(p.numel() for p in self.parameters()),
            "trainable": self.count_trainable(),
            **({"notes": self.notes} if self.notes else {}),
        }
