"""The frozen-prefix cache: entries in memory under the budget, larger ones spilled to
a memory-mapped file in full precision, least recently used out first."""

from __future__ import annotations

import pytest
import torch

import evotune.train.prefix_cache as prefix_cache
from evotune.data import Split
from evotune.models import ModelConfig, build_model
from evotune.train.prefix_cache import PrefixCache


@pytest.fixture(scope="module")
def template():
    config = ModelConfig(backbone="builtin:small_cnn", channels="keep", normalize="none")
    return build_model(config, (1, 12, 12), 3, seed=0).eval()


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(0)

    def split(n):
        x = torch.rand(n, 1, 12, 12, generator=generator)
        return Split(x, torch.randint(0, 3, (n,), generator=generator))

    return {"train": split(20), "val": split(7)}


def test_an_entry_over_the_budget_spills_to_a_mapped_file_with_the_same_values(
    template, inputs, tmp_path
):
    memory = PrefixCache(template, inputs, budget_bytes=2**30, chunk=8)
    disk = PrefixCache(template, inputs, budget_bytes=1, chunk=8, spill_dir=tmp_path)
    in_memory, spilled = memory.get(2), disk.get(2)
    assert (memory.spills, disk.spills) == (0, 2)  # one file per split
    for name in ("train", "val"):
        assert spilled[name].x.dtype == torch.float32  # full precision, not half
        assert torch.equal(spilled[name].x, in_memory[name].x)
        assert spilled[name].y is inputs[name].y
    assert list(tmp_path.iterdir()) == []  # unlinked as soon as mapped
    assert disk.used() == 0 and disk.used(spilled=True) == memory.used() > 0
    assert disk.get(2) is spilled and disk.hits == 1


def test_memory_entries_leave_least_recently_used_first(template, inputs):
    sizes = {}
    for stage in (1, 2, 3):
        sizes[stage] = PrefixCache(template, inputs, budget_bytes=2**30).get(stage)
        sizes[stage] = sum(split.x.numel() * 4 for split in sizes[stage].values())
    assert sizes[1] > sizes[2] > sizes[3]
    cache = PrefixCache(template, inputs, budget_bytes=sizes[1] + sizes[2])
    cache.get(1), cache.get(3), cache.get(1)
    cache.get(2)  # stage 3's entry is the smallest, but the least recently used
    assert list(cache.entries) == [1, 2] and cache.used() == cache.budget
    assert cache.spills == 0


def test_no_room_in_memory_nor_on_disk_means_no_cache(template, inputs, monkeypatch, tmp_path):
    monkeypatch.setattr(prefix_cache, "_disk_room", lambda folder: 0)
    cache = PrefixCache(template, inputs, budget_bytes=1, spill_dir=tmp_path)
    assert cache.get(2) is None and not cache.entries


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_spilled_entry_of_a_gpu_template_feeds_gpu_batches(template, inputs, tmp_path):
    import copy

    gpu = copy.deepcopy(template).cuda()
    on_gpu = {name: split.to("cuda") for name, split in inputs.items()}
    memory = PrefixCache(gpu, on_gpu, budget_bytes=2**30).get(2)
    spilled = PrefixCache(gpu, on_gpu, budget_bytes=1, spill_dir=tmp_path).get(2)
    assert not spilled["train"].x.is_cuda and memory["train"].x.is_cuda
    for (xa, ya), (xb, yb) in zip(
        memory["train"].batches(None, 8), spilled["train"].batches(None, 8), strict=True
    ):
        assert xb.is_cuda and torch.equal(xa, xb) and torch.equal(ya, yb)
