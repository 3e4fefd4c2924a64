"""Frozen-backbone features, extracted once and cached on disk.

MOEvoPruneDeepTL runs its frozen ResNet50 over the whole dataset at every fitness
evaluation; the features never change, so evotune extracts them once per (backbone,
weights, data, preprocessing) and keeps them under `cache_dir("features")`. The key is
a hash of what determines them: the model config, every backbone tensor (weights and
batch-norm statistics) and every input tensor, so a retrained backbone or changed data
gets new features, never stale ones.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from evotune.engine.state import atomic_write_bytes
from evotune.models import TransferNet
from evotune.models.kinds import get_kind
from evotune.paths import cache_dir

VERSION = 1  # bump when extraction itself changes


@torch.no_grad()
def extract_features(
    net: TransferNet, x: torch.Tensor, device: torch.device, batch_size: int = 256
) -> torch.Tensor:
    """Pooled backbone features of x, (N, feature_dim), float32 on the CPU."""
    was_training = net.training
    net.eval()
    try:
        parts = [
            net.features(x[s : s + batch_size].to(device)).float().cpu()
            for s in range(0, len(x), batch_size)
        ]
    finally:
        net.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, net.feature_dim)


def features_key(net: TransferNet, inputs: dict[str, torch.Tensor]) -> str:
    """Hash of the model config, the backbone's tensors and the inputs."""
    digest = hashlib.blake2b(digest_size=16)
    config = getattr(net, "config", None)
    spec = config.model_dump(mode="json") if config is not None else {}
    code = get_kind(config.kind).fingerprint(config.name) if config is not None else ""
    if code:  # python: the user's model code, which the tensors do not capture
        spec["code"] = code
    digest.update(json.dumps({"version": VERSION, "model": spec}, sort_keys=True).encode())
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("head.")}
    for name, tensor in sorted(state.items()) + sorted(inputs.items()):
        _update(digest, name, tensor)
    return digest.hexdigest()


def _update(digest: hashlib.blake2b, name: str, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
    if t.numel():
        digest.update(t.view(-1).view(torch.uint8).numpy())


def cached_features(
    net: TransferNet,
    inputs: dict[str, torch.Tensor],
    device: torch.device,
    batch_size: int = 256,
    folder: Path | None = None,
) -> tuple[dict[str, torch.Tensor], bool]:
    """Features of every named input; (features, whether they came from the cache)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save

    path = (folder or cache_dir("features")) / f"{features_key(net, inputs)}.safetensors"
    if path.exists():
        try:
            loaded = load_file(str(path))
            if set(loaded) == set(inputs):
                return loaded, True
        except (SafetensorError, OSError):
            pass  # a damaged file: extract again and replace it
    features = {k: extract_features(net, v, device, batch_size) for k, v in inputs.items()}
    atomic_write_bytes(path, save({k: v.contiguous() for k, v in features.items()}))
    return features, False
