"""Grad-CAM++ (Chattopadhay et al. 2018) of one backbone feature at a backbone stage.

The target is the pooled feature j (what a `features` genome keeps or drops), the
layer a stage of the frozen backbone (the last conv stage by default, as in
MOEvoPruneDeepTL). The weights are those of pytorch-grad-cam's GradCAMPlusPlus:

    a_k,ij = g^2 / (2 g^2 + sum_ab A_k,ab * g^3),  w_k = sum_ij a_k,ij * relu(g_k,ij)
    cam = relu(sum_k w_k A_k), scaled to [0, 1] per image and resized to the input.

At the last stage, where feature j is the spatial mean of channel j, this is channel
j's activation map; an earlier stage (`explain.stage: -2`) shows where the gradient
of feature j comes from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from evotune.models import TransferNet
from evotune.train.popheads import single_threaded

EPS = 1e-7  # min-max scaling, as pytorch-grad-cam
WEIGHT_EPS = 1e-6  # in the weights, as pytorch-grad-cam


def conv_stages(net: TransferNet) -> list[int]:
    """Indices of the stages whose output is a (N, C, H, W) map larger than 1 x 1 (a
    1 x 1 map, e.g. 8 x 8 digits after three poolings, shows nothing)."""
    x = torch.zeros(1, *net.input_shape, device=next(net.parameters()).device)
    found = []
    with torch.no_grad():
        out = net.adapter(x)
        for i in range(len(net.stages)):
            out = net.forward_stages(out, i, i + 1)
            if out.dim() == 4 and out.shape[2] * out.shape[3] > 1:
                found.append(i)
    return found


def grad_cam_pp(
    net: TransferNet, x: torch.Tensor, features: list[int], stage: int = -1
) -> torch.Tensor:
    """Heatmaps (len(features), N, H, W) in [0, 1], one per feature and input image."""
    with single_threaded():  # a few small images: threads only add waiting
        return _grad_cam_pp(net, x, features, stage)


def _grad_cam_pp(
    net: TransferNet, x: torch.Tensor, features: list[int], stage: int
) -> torch.Tensor:
    stages = conv_stages(net)
    if not stages:
        raise ValueError("the backbone has no convolutional stage to explain")
    index = stages[stage]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            maps = net.forward_stages(net.adapter(x), 0, index + 1)
        maps.requires_grad_(True)
        pooled = net.pool(net.forward_stages(maps, index + 1))
        cams = [_cam(maps, pooled[:, j].sum()) for j in features]
    finally:
        net.train(was_training)
    heat = torch.stack(cams)  # (F, N, h, w)
    size = tuple(x.shape[-2:])
    return _scaled(F.interpolate(heat, size=size, mode="bilinear", align_corners=False))


def _cam(maps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    (grads,) = torch.autograd.grad(target, maps, retain_graph=True)
    weights = cam_weights(maps.detach(), grads)
    return _scaled(torch.relu((weights[:, :, None, None] * maps.detach()).sum(dim=1)))


def _scaled(cam: torch.Tensor) -> torch.Tensor:
    """Each map to [0, 1], before and after resizing (as pytorch-grad-cam does)."""
    low = cam.flatten(-2).min(dim=-1).values[..., None, None]
    high = cam.flatten(-2).max(dim=-1).values[..., None, None]
    return (cam - low) / (high - low + EPS)


def cam_weights(maps: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights (N, C) from activations and gradients (N, C, h, w)."""
    g2 = grads.pow(2)
    g3 = g2 * grads
    total = maps.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + total * g3 + WEIGHT_EPS)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (alpha * torch.relu(grads)).sum(dim=(2, 3))
