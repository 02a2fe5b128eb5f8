"""bfloat16 linear layers packed once for oneDNN: the same outputs as nn.Linear, and what is left alone."""

import pytest
import torch
from torch import nn

from deployments.engines.packed_linear import PackedLinear, pack_linear_layers, packing_available

pytestmark = pytest.mark.unit

# This machine and the images' CPUs (x86-64 with AVX-512 or AMX) have oneDNN's bfloat16 matmul, so
# the layers are packed; a CPU without it must get the model back untouched, with the same outputs.
# Both are behaviours to check, so no test is skipped: each asserts the one this CPU should show, and
# the last test forces the other.
PACKS = packing_available()


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.embed = nn.Embedding(50, 32)
        self.up = nn.Linear(32, 96)
        self.down = nn.Linear(96, 32, bias=False)
        self.head = nn.Linear(32, 50, bias=False)
        self.head.weight = self.embed.weight  # tied, as Qwen3.5's output head is
        for parameter in self.parameters():
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.2

    def forward(self, ids):
        return self.head(self.down(torch.relu(self.up(self.embed(ids)))))


@pytest.mark.parametrize("shape", [(1, 32), (7, 32), (2, 5, 32)])
def test_a_packed_layer_gives_what_nn_linear_gives(shape):
    model = nn.Sequential(nn.Linear(32, 48)).to(torch.bfloat16)
    x = torch.randn(shape).to(torch.bfloat16)
    with torch.inference_mode():
        expected = model(x)
        assert pack_linear_layers(model) == (1 if PACKS else 0)
        assert torch.equal(model(x), expected)
    assert isinstance(model[0], PackedLinear) == PACKS


def test_packing_a_model_replaces_its_bfloat16_linears_and_keeps_its_outputs():
    model = Tiny().to(torch.bfloat16).eval()
    ids = torch.tensor([[1, 7, 3, 9], [4, 4, 0, 2]])
    with torch.inference_mode():
        before = model(ids)
        assert pack_linear_layers(model) == (3 if PACKS else 0)
        after = model(ids)
    assert all(isinstance(m, PackedLinear) == PACKS for m in (model.up, model.down, model.head))
    assert torch.equal(before, after)
    # The tied embedding still holds its weight: the packed head is a copy beside it.
    assert model.embed.weight.dtype == torch.bfloat16 and model.embed.weight.shape == (50, 32)


def test_float32_layers_and_linear_subclasses_are_left_alone():
    class Custom(nn.Linear):
        pass

    model = nn.Sequential(nn.Linear(8, 8), Custom(8, 8).to(torch.bfloat16))
    assert pack_linear_layers(model) == 0
    assert type(model[0]) is nn.Linear and type(model[1]) is Custom


def test_without_onednn_bfloat16_nothing_is_packed(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False, raising=False)
    model = Tiny().to(torch.bfloat16)
    assert not packing_available()
    assert pack_linear_layers(model) == 0
    assert type(model.up) is nn.Linear
