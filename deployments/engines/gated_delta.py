"""Qwen3.5's gated delta rule (its linear-attention layers), one token at a time, written for
the CPU in place of transformers' reference PyTorch code.

transformers runs the rule through flash-linear-attention's Triton kernels when that package is
installed (GPU only) and otherwise through a reference written for readability, whose one-token
decode step multiplies the whole recurrent state (batch x heads x 128 x 128 floats) element by
element four times, each pass making a temporary the size of the state. That was 38% of a decode
step of the demo checkpoint on the CPU (py-spy, docs/performance.md).

`recurrent_gated_delta_rule` computes the same recurrence with one batched product reading the
state for both of its uses and two in-place passes updating it: 4-5x faster at 32 rows. Results
match the reference to float32 rounding (a unit test holds them to it). The chunked prefill rule is
left to transformers: a rewrite with fused solves and products measured no faster, its time being
memory passes the rewrite did not remove. `install` swaps the function into transformers' Qwen3.5
module only where the reference is what would run: where flash-linear-attention is installed, its
kernels stay.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import torch


def _l2_normalised(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    # As transformers' l2norm (eps inside the root), with an optional scale folded into the multiply.
    return x * (torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + 1e-6) * scale)


def _prepare(query, key, value, use_qk_l2norm_in_kernel):
    """Heads first, float32, queries scaled by the head dimension (as the reference does)."""
    query, key, value = (x.transpose(1, 2).float() for x in (query, key, value))
    scale = query.shape[-1] ** -0.5
    if use_qk_l2norm_in_kernel:
        return _l2_normalised(query, scale), _l2_normalised(key), value
    return query * scale, key, value


def recurrent_gated_delta_rule(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gated delta rule token by token (the decode step): same arguments and results as
    transformers' `torch_recurrent_gated_delta_rule`. Shapes: query/key `(batch, seq, heads, K)`,
    value `(batch, seq, heads, V)`, g/beta `(batch, seq, heads)`, state `(batch, heads, K, V)`."""
    out_dtype = query.dtype
    batch, length, heads, k_dim = key.shape
    v_dim = value.shape[-1]
    query, key, value = _prepare(query, key, value, use_qk_l2norm_in_kernel)
    decay = g.transpose(1, 2).float().exp()
    beta = beta.transpose(1, 2).float()
    if initial_state is None:
        state = query.new_zeros(batch, heads, k_dim, v_dim)
    else:
        # Updated in place: the layer stores the returned state into this same tensor of its cache
        # right after the call (a copy onto itself, which torch skips), so a copy would be two more
        # passes over the state for nothing.
        state = initial_state.to(torch.float32)
    flat_state = state.view(batch * heads, k_dim, v_dim)
    out = query.new_empty(batch, heads, length, v_dim)
    for t in range(length):
        decay_t = decay[:, :, t].reshape(batch * heads, 1, 1)
        # One read of the old state for both products: rows are [k_t; q_t] @ S.
        reads = torch.bmm(
            torch.stack((key[:, :, t], query[:, :, t]), dim=2).reshape(batch * heads, 2, k_dim), flat_state
        )
        k_t = key[:, :, t].reshape(batch * heads, 1, k_dim)
        # delta = beta * (v - k (decay S)); S' = decay S + k^T delta; out = q S' = decay q S + (q.k) delta
        delta = (value[:, :, t].reshape(batch * heads, 1, v_dim) - decay_t * reads[:, :1]) * beta[
            :, :, t
        ].reshape(batch * heads, 1, 1)
        q_dot_k = (query[:, :, t] * key[:, :, t]).sum(-1).reshape(batch * heads, 1, 1)
        out[:, :, t] = (decay_t * reads[:, 1:] + q_dot_k * delta).view(batch, heads, v_dim)
        flat_state.mul_(decay_t).baddbmm_(k_t.transpose(1, 2), delta)
    out = out.transpose(1, 2).contiguous().to(out_dtype)
    return out, (state if output_final_state else None)


def install(modeling_module: ModuleType | None = None) -> bool:
    """Make transformers' Qwen3.5 linear-attention layers decode with `recurrent_gated_delta_rule`
    where they would otherwise run the reference PyTorch code (flash-linear-attention not
    installed). Idempotent; returns whether it is in use."""
    if importlib.util.find_spec("fla") is not None:
        return False
    if modeling_module is None:
        from transformers.models.qwen3_5 import modeling_qwen3_5 as modeling_module
    if not callable(getattr(modeling_module, "torch_recurrent_gated_delta_rule", None)):
        # Another transformers layout: keep its own code rather than guess.
        return False
    modeling_module.torch_recurrent_gated_delta_rule = recurrent_gated_delta_rule
    return True
