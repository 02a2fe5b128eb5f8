"""bfloat16 linear layers on the CPU with their weights packed once, as vLLM's CPU backend does.

`nn.Linear` on a bfloat16 CPU tensor calls oneDNN's matmul with the weight in PyTorch's row-major
layout, and oneDNN reorders that weight into its blocked layout on every call: a pass over the whole
weight matrix per layer per step. vLLM's CPU build packs each weight once at load. Doing the same
through the op PyTorch's own compiler uses for it (`mkldnn._reorder_linear_weight` once, then
`mkldnn._linear_pointwise`) gives the same numbers, and on the real Qwen3.5-0.8B dimensions made a
decode step 1.81x faster at 4 rows and 1.21x at 32 (one thread, this 2-core machine, 2026-12-07;
`bench/packed_linear.py`, docs/performance.md). float32 gains nothing this way (MKL's packed
float32 GEMM measured within 5% of the plain one), so only bfloat16 weights are packed.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def packing_available() -> bool:
    """Whether this PyTorch build can pack bfloat16 linear weights for oneDNN on this CPU."""
    ops = torch.ops.mkldnn
    try:
        return (
            torch.backends.mkldnn.is_available()
            and hasattr(ops, "_reorder_linear_weight")
            and hasattr(ops, "_linear_pointwise")
            and bool(ops._is_mkldnn_bf16_supported())
        )
    except (AttributeError, RuntimeError):
        return False


class PackedLinear(nn.Module):
    """An `nn.Linear` whose bfloat16 weight is held in oneDNN's blocked layout (inference only).

    The packed weight is an opaque oneDNN tensor, kept as a plain attribute rather than a parameter:
    `state_dict`, `.to()` and gradients do not apply to it.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        # The batch-size hint only picks oneDNN's blocking; measured the same from 1 to 2,048 rows.
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), 1)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed=oneDNN"


def _packable(module: nn.Module) -> bool:
    return (
        type(module) is nn.Linear  # subclasses (quantized, LoRA) carry behaviour of their own
        and module.weight.dtype == torch.bfloat16
        and module.weight.device.type == "cpu"
    )


def _same_output(linear: nn.Linear, packed: PackedLinear) -> bool:
    probe = torch.randn(3, linear.in_features, dtype=linear.weight.dtype)
    with torch.no_grad():
        return torch.allclose(linear(probe).float(), packed(probe).float(), rtol=1e-2, atol=1e-2)


def pack_linear_layers(model: nn.Module) -> int:
    """Replace every bfloat16 CPU `nn.Linear` of `model` by a `PackedLinear`; returns how many.

    The first layer packed is checked against the plain one on a random input; if the two differ, or
    the build cannot pack, nothing is replaced. A weight tied to another module (Qwen3.5's output
    head shares the token embedding) stays where it is, so the packed copy adds its size.
    """
    if not packing_available():
        return 0
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if _packable(child)
    ]
    if not targets:
        return 0
    first_parent, first_name, first = targets[0]
    packed_first = PackedLinear(first)
    if not _same_output(first, packed_first):
        log.warning("packed linear layers differ from nn.Linear on this CPU; keeping nn.Linear")
        return 0
    setattr(first_parent, first_name, packed_first)
    for parent, name, child in targets[1:]:
        setattr(parent, name, PackedLinear(child))
    return len(targets)
