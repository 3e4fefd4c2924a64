"""Grad-CAM++ of backbone features, checked against pytorch-grad-cam (a dev dependency:
the comparison fails, rather than skips, where it is missing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from evotune.models import ModelConfig, build_model
from evotune.prune.gradcam import conv_stages, grad_cam_pp


def small_net():
    torch.manual_seed(0)
    config = ModelConfig(backbone="builtin:small_resnet", channels="keep", normalize="none")
    return build_model(config, (1, 16, 16), 3, seed=0).eval()


def test_maps_are_scaled_per_image_and_sized_like_the_input():
    net = small_net()
    x = torch.rand(3, 1, 16, 16)
    heat = grad_cam_pp(net, x, [0, 5], stage=-2)
    assert heat.shape == (2, 3, 16, 16)
    assert heat.min() >= 0 and heat.max() <= 1 + 1e-6
    assert conv_stages(net)[-1] == len(net.stages) - 1


class Features(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x)


@pytest.mark.parametrize("stage", [-1, -3])
def test_same_maps_as_pytorch_grad_cam(stage):
    # imported here so that a missing oracle fails this test only, not the module
    import pytorch_grad_cam as cam_lib
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = small_net()
    x = torch.rand(2, 1, 16, 16)
    layer = net.stages[conv_stages(net)[stage]]
    feature = 7
    with cam_lib.GradCAMPlusPlus(model=Features(net), target_layers=[layer]) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(feature)] * 2)
    ours = grad_cam_pp(net, x, [feature], stage)[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-3)
