"""Population-batched heads: equal to training each head alone (bit for bit) and to the
plain nn.Module + torch.optim.SGD way (to float tolerance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evotune.train import popgroup
from evotune.train.headref import train_reference
from evotune.train.maskedhead import HeadSettings, Member, initial_block, initial_weights
from evotune.train.popgroup import padded_size, plan_groups
from evotune.train.popheads import members_from_masks, train_heads

N, D, H, C = 96, 40, 24, 4


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (N,), generator=gen)
    x = torch.randn(N, D, generator=gen) + 0.8 * torch.nn.functional.one_hot(y, D).float()
    return x, y


def population(p: int = 7, seed: int = 1) -> list[Member]:
    rng = np.random.default_rng(seed)
    fm = (rng.random((p, D)) < rng.random((p, 1))).astype(np.uint8)
    nm = (rng.random((p, H)) < rng.random((p, 1))).astype(np.uint8)
    fm[0], nm[0] = 1, 1  # a full head
    if p > 1:
        fm[1] = 0  # nothing active: only the output bias learns
    return members_from_masks(fm, nm, np.arange(p) + 100)


SETTINGS = HeadSettings(hidden=H, epochs=12, batch_size=16, lr=0.05, patience=2, group_mb=0.01)


def assert_same(a, b, exact: bool = True, atol: float = 0.0) -> None:
    assert a.epochs == b.epochs
    for name in ("w1", "w2", "b2"):
        x, y = getattr(a, name), getattr(b, name)
        if exact:
            assert torch.equal(x, y), name
        else:
            torch.testing.assert_close(x, y, rtol=1e-4, atol=atol)


def test_batched_equals_one_at_a_time_bit_for_bit():
    x, y = data()
    members = population()
    together = train_heads(members, x, y, SETTINGS, n_classes=C)
    for member, head in zip(members, together):
        alone = train_heads([member], x, y, SETTINGS, n_classes=C)[0]
        assert_same(head, alone)
        assert head.history == alone.history
    assert len({h.epochs for h in together}) > 1  # members stopped at different epochs


def test_a_member_does_not_depend_on_its_companions_or_threads():
    x, y = data()
    members = population(9)
    big_groups = HeadSettings(**{**SETTINGS.__dict__, "group_mb": 64.0, "threads": 1})
    reference = train_heads(members[:5], x, y, SETTINGS, n_classes=C)
    shuffled = train_heads(members[::-1], x, y, big_groups, n_classes=C)[::-1]
    for a, b in zip(reference, shuffled[:5]):
        assert_same(a, b)


@pytest.mark.parametrize("fused", [True, False])
def test_independent_of_companions_at_blas_sizes(fused, monkeypatch):
    # sizes where bmm calls MKL (not its small-matrix loop), 10 classes (not a multiple
    # of a vector), groups of 2-3 equal blocks against the members alone; with torch's
    # fused SGD kernel and with the three-pass update of a torch without it
    if not fused:
        monkeypatch.setattr(popgroup, "_has_fused_sgd", lambda device_type: False)
    gen = torch.Generator().manual_seed(4)
    x, y = torch.rand(72, 300, generator=gen), torch.randint(0, 10, (72,), generator=gen)
    rng = np.random.default_rng(4)
    fm = np.zeros((7, 300), np.uint8)
    for i, k in enumerate([200, 200, 199, 96, 95, 250, 33]):
        fm[i, rng.choice(300, k, replace=False)] = 1
    nm = np.ones((7, 64), np.uint8)
    nm[5, :20] = 0
    members = members_from_masks(fm, nm, np.arange(7) + 50)
    settings = HeadSettings(hidden=64, epochs=3, lr=0.05, patience=None, group_mb=64.0)
    together = train_heads(members, x, y, settings, n_classes=10)
    assert len(plan_groups(members, 72, settings, torch.device("cpu"))) < len(members)
    for member, head in zip(members, together):
        assert_same(head, train_heads([member], x, y, settings, n_classes=10)[0])


def test_a_members_initial_block_is_its_share_of_the_full_draw():
    member = population(3, seed=8)[2]
    w1, w2, b2 = initial_weights(member.seed, D, H, C)
    block = initial_block(member, D, H, C)
    assert torch.equal(block[0], w1[member.inputs][:, member.hidden])
    assert torch.equal(block[1], w2[member.hidden])
    assert torch.equal(block[2], b2)


@pytest.fixture
def one_thread():
    # tiny autograd steps on 2 OMP threads crawl when another process holds a core
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("momentum,nesterov", [(0.9, True), (0.9, False), (0.0, False)])
def test_matches_nn_module_with_torch_sgd(momentum, nesterov, fused, one_thread, monkeypatch):
    if not fused:  # the three-pass update of a torch without the fused kernel
        monkeypatch.setattr(popgroup, "_has_fused_sgd", lambda device_type: False)
    x, y = data(3)
    settings = HeadSettings(
        hidden=H,
        epochs=6,
        batch_size=16,
        lr=0.05,
        momentum=momentum,
        nesterov=nesterov,
        patience=None,
    )
    members = population(4, seed=5)
    heads = train_heads(members, x, y, settings, n_classes=C)
    for member, head in zip(members, heads):
        _, plain = train_reference(member, x, y, C, settings)
        assert_same(head, plain, exact=False, atol=1e-5)
        np.testing.assert_allclose(head.history, plain.history, rtol=1e-5)


def test_early_stopping_on_the_training_loss():
    x, y = data()
    frozen = HeadSettings(hidden=H, epochs=50, lr=1e-12, momentum=0.0, patience=3)
    head = train_heads(population(1), x, y, frozen, n_classes=C)[0]
    # with (almost) no learning the loss stalls: the first epoch, then 3 without a gain
    assert head.epochs <= 1 + 3 + 2
    capped = HeadSettings(hidden=H, epochs=4, lr=0.05, patience=None)
    assert train_heads(population(1), x, y, capped, n_classes=C)[0].epochs == 4


def test_rows_train_on_those_examples_only():
    x, y = data()
    rows = torch.arange(0, N, 2)
    member = population(2)[0]
    subset = Member(member.seed, member.inputs, member.hidden, rows)
    on_rows = train_heads([subset], x, y, SETTINGS, n_classes=C)[0]
    on_slice = train_heads([member], x[rows], y[rows], SETTINGS, n_classes=C)[0]
    assert_same(on_rows, on_slice)


def test_heads_are_physically_pruned_and_predict_like_the_mask():
    x, y = data()
    members = population()
    for member, head in zip(members, train_heads(members, x, y, SETTINGS, n_classes=C)):
        assert head.w1.shape == (len(member.inputs), len(member.hidden))
        assert head.n_params == head.w1.numel() + len(member.hidden) * C + C
        dense = torch.zeros(D, H)
        dense[member.inputs[:, None], member.hidden[None, :]] = head.w1
        w2 = torch.zeros(H, C)
        w2[member.hidden] = head.w2
        masked = torch.relu(x @ dense) @ w2 + head.b2
        torch.testing.assert_close(head.logits(x), masked, rtol=1e-5, atol=1e-5)


def test_block_sizes_depend_on_the_member_only():
    sizes = [padded_size(n, 8) for n in range(1, 3000)]
    assert all(s >= n for n, s in zip(range(1, 3000), sizes))
    assert all((s - n) / n <= 0.125 for n, s in zip(range(65, 3000), sizes[64:]))
    members = population(12)
    groups = plan_groups(members, N, SETTINGS, torch.device("cpu"))
    assert sorted(i for g in groups for i in g) == list(range(12))
