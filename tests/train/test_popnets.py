"""Population-batched nets: tied layers, batched == per-member, independent members."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from evotune.train import popnets
from evotune.train.autoencoder import TiedStack, minibatches, train_layer
from evotune.train.finetune import TrainSettings
from evotune.train.popnets import (
    PopulationModule,
    cross_entropy_and_accuracy,
    gradient_steps,
    population_rmse,
    tied_reconstruct,
)


def weights(p=4, out=6, width=10, seed=0):
    return torch.randn(p, out, width, generator=torch.Generator().manual_seed(seed)) * 0.3


def data(n=50, width=10, seed=1):
    return torch.rand(n, width, generator=torch.Generator().manual_seed(seed))


def test_tied_layer_decodes_with_the_encoders_transpose():
    w, x = weights(), data()
    expected = torch.stack([torch.relu(x @ wi.T) @ wi for wi in w])
    assert torch.allclose(tied_reconstruct(x, w), expected, atol=1e-6)
    assert torch.allclose(tied_reconstruct(x, w, "tanh"), torch.tanh(expected), atol=1e-6)


def test_tied_weight_is_one_parameter_with_both_gradients():
    """dL/dW of the tied layer = encoder's + decoder's gradient of an untied copy."""
    x = data()
    w = weights(p=1)[0].requires_grad_(True)
    ((tied_reconstruct(x, w[None])[0] - x) ** 2).mean().backward()
    enc, dec = (w.detach().clone().requires_grad_(True) for _ in range(2))
    ((torch.relu(x @ enc.T) @ dec - x) ** 2).mean().backward()
    assert torch.allclose(w.grad, enc.grad + dec.grad, atol=1e-6)
    stack = TiedStack([w.detach(), torch.randn(3, 6)])
    assert [tuple(t.shape) for t in stack.weights] == [(6, 10), (3, 6)]  # no decoder copies


def test_batched_rmse_equals_each_member_alone_and_a_plain_module():
    w, x = weights(p=5), data()
    batched = population_rmse(x, w, x, "sigmoid")
    alone = torch.cat([population_rmse(x, wi[None], x, "sigmoid") for wi in w])
    assert torch.allclose(batched, alone, rtol=1e-5)
    for wi, rmse in zip(w, batched):
        enc = nn.Linear(10, 6, bias=False)
        enc.weight.data = wi.clone()
        with torch.no_grad():
            recon = torch.sigmoid(nn.functional.linear(torch.relu(enc(x)), enc.weight.T))
        assert float(rmse) == pytest.approx(float(((recon - x) ** 2).mean().sqrt()), rel=1e-5)


def test_chunked_rmse_equals_unchunked(monkeypatch):
    w, x = weights(p=3), data(n=77)
    whole = population_rmse(x, w, x)
    monkeypatch.setattr(popnets, "CHUNK_ELEMENTS", 3 * 10 * 8)  # 8 examples per chunk
    assert torch.allclose(population_rmse(x, w, x), whole, rtol=1e-6)


def test_rmse_through_frozen_layers_matches_the_stack():
    x = data(width=10)
    first = weights(p=1, out=6, width=10, seed=3)[0]
    second = weights(p=2, out=4, width=6, seed=4)
    codes = torch.relu(x @ first.T)
    batched = population_rmse(codes, second, x, "linear", [first])
    for wi, rmse in zip(second, batched):
        full = TiedStack([first, wi]).rmse(x)
        assert float(rmse) == pytest.approx(full, rel=1e-5)


def test_gradient_steps_train_members_independently():
    """Training members together gives each the result it gets alone (seeded batches)."""
    w, x = weights(p=3), data(n=64)
    settings = TrainSettings(optimizer="adadelta", lr=1.0, batch_size=8)
    together = train_layer(w, x, x, [], "linear", settings, 5, [11, 12, 13])
    for i, seed in enumerate([11, 12, 13]):
        alone = train_layer(w[i : i + 1], x, x, [], "linear", settings, 5, [seed])
        assert torch.allclose(together[i], alone[0], atol=1e-5)
    assert not torch.allclose(together, w)  # the weights really changed
    assert (population_rmse(x, together, x) < population_rmse(x, w, x)).all()


def test_gradient_steps_report_each_step():
    seen = []
    p = torch.ones(2, 3)
    out = gradient_steps(
        p, lambda q, step: (q**2).sum(dim=1), 4, "sgd", 0.1, lambda s, q: seen.append(s)
    )
    assert seen == [1, 2, 3, 4]
    assert torch.allclose(out, torch.full((2, 3), 0.8**4))


def test_minibatches_walk_shuffled_epochs():
    batches = minibatches(10, 4, 5, seed=0)
    assert batches.shape == (5, 4)
    assert sorted(batches.reshape(-1)[:10].tolist()) == list(range(10))  # first epoch whole
    assert torch.equal(batches, minibatches(10, 4, 5, seed=0))


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3))


def test_population_module_matches_loading_each_member():
    module = mlp()
    pop = PopulationModule(module)
    flat = torch.randn(4, pop.n_genes, generator=torch.Generator().manual_seed(2))
    x = torch.rand(9, 1, 3, 4)
    batched = pop.forward(flat, x)
    for i in range(4):
        oracle = mlp()
        torch.nn.utils.vector_to_parameters(flat[i], oracle.parameters())
        assert torch.allclose(batched[i], oracle(x), atol=1e-6)
    each = pop.forward_each(flat, x.expand(4, *x.shape))
    assert torch.allclose(each, batched, atol=1e-6)
    assert torch.allclose(pop.forward_each(flat[:1], x[None]), batched[:1], atol=1e-6)
    assert torch.equal(pop.flatten(), torch.nn.utils.parameters_to_vector(module.parameters()))


def test_population_module_init_std_follows_each_tensor():
    pop = PopulationModule(mlp())
    std = pop.init_std().numpy()
    assert std.shape == (pop.n_genes,)
    first = np.asarray(pop.module[1].weight.detach()).std(ddof=1)
    assert std[0] == pytest.approx(first, rel=1e-5)


def test_cross_entropy_and_accuracy_per_member():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0]], [[0.0, 2.0], [0.0, 2.0]]])
    y = torch.tensor([0, 1])
    loss, acc = cross_entropy_and_accuracy(logits, y)
    assert acc.tolist() == [1.0, 0.5]
    assert float(loss[0]) == pytest.approx(float(nn.functional.cross_entropy(logits[0], y)))
