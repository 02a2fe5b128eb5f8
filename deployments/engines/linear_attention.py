"""Qwen3.5's linear-attention layers (Gated DeltaNet) on the CPU: three functions in place of
transformers' reference PyTorch code.

transformers runs these layers through flash-linear-attention's and causal-conv1d's kernels when
those packages are installed (GPU only) and otherwise through a reference written for readability,
whose cost on the CPU is mostly memory passes and copies, not arithmetic (py-spy,
docs/performance.md):
- the one-token decode step multiplies the whole recurrent state (rows x heads x 128 x 128 floats)
  element by element four times, each pass making a temporary the size of the state: 38% of a
  decode step of the demo checkpoint;
- the chunked prefill rule slices its chunks out of heads-major tensors and copies each product's
  operands and result: 38% of a batch-job inference actor's decode thread;
- the depthwise causal convolution runs as a grouped `conv1d` over a time-major tensor seen
  channels-first, which oneDNN handles slowly: 14% of that thread.

`recurrent_gated_delta_rule` reads the state once for both of its products and updates it in place
(about 5x faster at 32 rows); `chunk_gated_delta_rule` keeps the reference's algorithm with
chunk-major tensors and in-place products (1.2x on whole prompts, 1.8x on the engine's 64-token
chunks of 32 rows), in chunks of 16 tokens rather than 64 and a short prompt in one chunk of its
own length (a further 1.2-1.4x on long prompts, 2-3.7x on 20-token chat prompts);
`causal_conv1d_fn` takes a time-major input as NHWC for oneDNN's depthwise `conv2d`, with no copy
(3-7x). Results match the reference to float32 rounding (unit tests hold them to it). `install`
swaps each function into transformers' Qwen3.5 module only where the reference is what would run:
where a kernel package is installed, its kernels stay.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import torch
import torch.nn.functional as F
from transformers.activations import ACT2FN


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
        state = initial_state.to(torch.float32).contiguous()
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
        beta_t = beta[:, :, t].reshape(batch * heads, 1, 1)
        delta = (value[:, :, t].reshape(batch * heads, 1, v_dim) - decay_t * reads[:, :1]) * beta_t
        q_dot_k = (query[:, :, t] * key[:, :, t]).sum(-1).reshape(batch * heads, 1, 1)
        out[:, :, t] = (decay_t * reads[:, 1:] + q_dot_k * delta).view(batch, heads, v_dim)
        flat_state.mul_(decay_t).baddbmm_(k_t.transpose(1, 2), delta)
    out = out.transpose(1, 2).contiguous().to(out_dtype)
    return out, (state if output_final_state else None)


# Chunk length of the prefill rule on the CPU. The reference's 64 suits GPU kernels; here the
# intra-chunk products and triangular solves grow with its square, and 16 measured 1.2-1.4x faster
# than 64 over 200-1,024-token prompts (8: no faster). A prompt of up to two such chunks runs as one
# chunk of its own length, with no padding: 2-3.7x on 20-token prompts (bench/linear_attention.py
# --chunks). The rule's result does not depend on the chunk length, float rounding aside.
CPU_CHUNK_TOKENS = 16


def chunk_length(length: int, requested: int) -> int:
    """The chunk length the prefill rule uses for `length` tokens (at most `requested`)."""
    if length <= 2 * CPU_CHUNK_TOKENS:
        return max(1, min(length, requested))
    return min(requested, CPU_CHUNK_TOKENS)


def chunk_gated_delta_rule(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    chunk_size: int = 64,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gated delta rule over prompt tokens in chunks (prefill): same arguments and results as
    transformers' `torch_chunk_gated_delta_rule`, and the same algorithm (the WY/UT form of
    DeltaNet: a triangular solve within each chunk, then a scan over chunks), in chunks of
    `chunk_length(seq, chunk_size)` tokens."""
    out_dtype = query.dtype
    batch, length, heads, k_dim = key.shape
    v_dim = value.shape[-1]
    size = chunk_length(length, chunk_size)
    query, key, value = _prepare(query, key, value, use_qk_l2norm_in_kernel)
    decay = g.transpose(1, 2).float()
    beta = beta.transpose(1, 2).float()
    pad = (-length) % size
    if pad:
        query, key, value = (F.pad(x, (0, 0, 0, pad)) for x in (query, key, value))
        decay, beta = (F.pad(x, (0, pad)) for x in (decay, beta))
    chunks = (length + pad) // size
    flat = batch * heads

    def chunk_major(x: torch.Tensor) -> torch.Tensor:
        # (chunks, batch*heads, size, dim): a chunk's slice is contiguous, so the scan's products
        # are plain bmm calls with no copies of their operands.
        return (
            x.reshape(batch, heads, chunks, size, -1).permute(2, 0, 1, 3, 4).reshape(chunks, flat, size, -1)
        )

    query, key, value, beta = chunk_major(query), chunk_major(key), chunk_major(value), chunk_major(beta)
    cum_decay = chunk_major(decay).squeeze(-1).cumsum(dim=-1)

    upper = torch.ones(size, size, dtype=torch.bool, device=query.device).triu(1)
    pairwise_decay = (
        (cum_decay.unsqueeze(-1) - cum_decay.unsqueeze(-2)).masked_fill_(upper, float("-inf")).exp_()
    )
    k_beta = key * beta
    key_t = key.transpose(-1, -2)
    ut_system = torch.matmul(k_beta, key_t).mul_(pairwise_decay)
    intra_chunk_attn = torch.matmul(query, key_t).mul_(pairwise_decay)
    decay_in = cum_decay.exp().unsqueeze(-1)
    new_values = torch.linalg.solve_triangular(ut_system, value * beta, upper=False, unitriangular=True)
    k_cumdecay = torch.linalg.solve_triangular(
        ut_system, k_beta.mul_(decay_in), upper=False, unitriangular=True
    )
    # query and k_beta are this function's own tensors (prepared above); key may be the caller's.
    query.mul_(decay_in)
    key_out = (key * (cum_decay[..., -1:] - cum_decay).exp_().unsqueeze(-1)).transpose(-1, -2)
    chunk_decay = cum_decay[..., -1].exp().reshape(chunks, flat, 1, 1)
    if initial_state is None:
        state = query.new_zeros(batch, heads, k_dim, v_dim)
    else:
        # Updated in place, as in recurrent_gated_delta_rule.
        state = initial_state.to(torch.float32).contiguous()
    flat_state = state.view(flat, k_dim, v_dim)
    out = query.new_empty(chunks, flat, size, v_dim)
    for i in range(chunks):
        v_new = torch.baddbmm(new_values[i], k_cumdecay[i], flat_state, alpha=-1)
        torch.baddbmm(torch.bmm(query[i], flat_state), intra_chunk_attn[i], v_new, out=out[i])
        flat_state.mul_(chunk_decay[i]).baddbmm_(key_out[i], v_new)
    out = (
        out.reshape(chunks, batch, heads, size, v_dim).permute(1, 0, 3, 2, 4).reshape(batch, -1, heads, v_dim)
    )
    out = out[:, :length].to(out_dtype).contiguous()
    return out, (state if output_final_state else None)


def causal_conv1d_fn(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    **kwargs,
) -> torch.Tensor:
    """The layer's depthwise causal convolution over a prompt: same arguments and result as
    transformers' `causal_conv1d_fn`. `hidden_states` is `(batch, channels, seq)`; `weight` is
    `(channels, kernel)`."""
    _, channels, length = hidden_states.shape
    kernel = weight.shape[-1]
    frames = hidden_states.to(weight.dtype)
    if frames.stride(1) == 1:
        # A first prompt chunk: the layer's (batch, seq, channels) projection seen channels-first.
        # As (batch, channels, 1, seq) that is NHWC, which oneDNN's depthwise conv2d takes as is.
        out = F.conv2d(
            frames.unsqueeze(2),
            weight.view(channels, 1, 1, kernel),
            bias,
            padding=(0, kernel - 1),
            groups=channels,
        )
        out = out.squeeze(2)[:, :, :length]
    else:
        # A later chunk, joined to its cached context by the cache's concatenation (contiguous):
        # conv1d as the reference runs it. Shifted multiply-adds measured 0.6x to 1.6x of it there,
        # depending on the allocation they were given, so no gain to count on.
        out = F.conv1d(frames, weight.unsqueeze(1), bias, padding=kernel - 1, groups=channels)[:, :, :length]
    if activation is not None:
        out = ACT2FN[activation](out)
    return out.to(hidden_states.dtype)


# transformers' name for each function, and the kernel package whose presence means it is not the reference
REPLACEMENTS = {
    "torch_recurrent_gated_delta_rule": ("fla", recurrent_gated_delta_rule),
    "torch_chunk_gated_delta_rule": ("fla", chunk_gated_delta_rule),
    "causal_conv1d_fn": ("causal_conv1d", causal_conv1d_fn),
}


def install(modeling_module: ModuleType | None = None) -> list[str]:
    """Make transformers' Qwen3.5 linear-attention layers use the functions above where they would
    otherwise run the reference PyTorch code (the kernel package for that function not installed).
    Idempotent; returns the names of transformers' functions now replaced."""
    if modeling_module is None:
        from transformers.models.qwen3_5 import modeling_qwen3_5 as modeling_module
    replaced = []
    for name, (package, function) in REPLACEMENTS.items():
        if importlib.util.find_spec(package) is not None:
            continue
        if not callable(getattr(modeling_module, name, None)):
            # Another transformers layout: keep its own code rather than guess.
            continue
        setattr(modeling_module, name, function)
        replaced.append(name)
    return replaced
