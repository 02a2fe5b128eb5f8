"""Per-row model state of a running batch on Qwen3.5's hybrid stack, spliced and filtered per row.

Qwen3.5 interleaves Gated DeltaNet layers (a fixed-size conv state and recurrent state per row) with
full-attention layers (a key/value cache that grows with the sequence). Both live in one transformers
`DynamicCache`; this module joins two batches and drops rows along the batch axis:

- linear-attention layers: conv and recurrent states are concatenated / indexed on dim 0;
- attention layers: the KV cache is left-padded (an attention mask marks real positions); joining
  re-pads both sides to the longer length, and dropping rows trims the padding every row shares.

Left padding was chosen over a paged layout: on CPU the demo and 0.8B models are dominated by
per-layer overhead rather than KV reads, and re-padding happens only when rows join. Positions are tracked per
row (`next_position`, 3-axis mrope for image rows), so a row's output does not depend on how much
padding its neighbours force on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _attention_layers(cache) -> list:
    return [layer for layer in cache.layers if hasattr(layer, "keys") and not hasattr(layer, "conv_states")]


def _linear_layers(cache) -> list:
    return [layer for layer in cache.layers if hasattr(layer, "conv_states")]


@dataclass
class BatchState:
    """The cache and per-row bookkeeping tensors of the rows decoding together, in row order.

    Attributes:
        cache: a transformers `DynamicCache` holding every row's KV and linear-attention state.
        mask: (rows, length) long; 1 where the attention KV holds a real position.
        next_position: (rows,) long; the rope position of each row's next token.
        last_tokens: (rows,) long; the token each row feeds at the next step.
        counts: (rows, vocab) float; how often each row generated each id (penalties).
    """

    cache: object
    mask: torch.Tensor
    next_position: torch.Tensor
    last_tokens: torch.Tensor
    counts: torch.Tensor

    @property
    def size(self) -> int:
        """Rows in the batch."""
        return int(self.mask.shape[0])

    def select(self, keep: list[int]) -> None:
        """Keep only rows `keep` (in that order), then trim left padding all rows share."""
        index = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        self.mask = self.mask.index_select(0, index)
        self.next_position = self.next_position.index_select(0, index)
        self.last_tokens = self.last_tokens.index_select(0, index)
        self.counts = self.counts.index_select(0, index)
        select_cache_rows(self.cache, index)
        # Columns that are padding in every remaining row carry no information: drop them.
        if self.mask.shape[0]:
            real = self.mask.any(dim=0).nonzero()
            shared_pad = int(real[0, 0]) if real.numel() else 0
            if shared_pad:
                self.mask = self.mask[:, shared_pad:]
                for layer in _attention_layers(self.cache):
                    if layer.keys is not None and layer.keys.numel():
                        layer.keys = layer.keys[:, :, shared_pad:]
                        layer.values = layer.values[:, :, shared_pad:]

    def join(self, other: BatchState) -> None:
        """Append `other`'s rows after this batch's rows (both are left-padded to one length)."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(other.mask, width, 1)])
        self.next_position = torch.cat([self.next_position, other.next_position])
        self.last_tokens = torch.cat([self.last_tokens, other.last_tokens])
        self.counts = torch.cat([self.counts, other.counts])
        for mine, theirs in zip(_linear_layers(self.cache), _linear_layers(other.cache), strict=True):
            for i in mine.conv_states:
                mine.conv_states[i] = torch.cat([mine.conv_states[i], theirs.conv_states[i]])
                mine.recurrent_states[i] = torch.cat([mine.recurrent_states[i], theirs.recurrent_states[i]])
        for mine, theirs in zip(_attention_layers(self.cache), _attention_layers(other.cache), strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width, 2), _left_pad(theirs.keys, width, 2)])
            mine.values = torch.cat([_left_pad(mine.values, width, 2), _left_pad(theirs.values, width, 2)])


def select_cache_rows(cache, index: torch.Tensor) -> None:
    """Keep only the cache rows in `index` (in that order), in every layer (any device)."""
    on_device: dict[torch.device, torch.Tensor] = {}

    def pick(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.device not in on_device:
            on_device[tensor.device] = index.to(tensor.device)
        return tensor.index_select(0, on_device[tensor.device])

    for layer in _linear_layers(cache):
        for i, state in layer.conv_states.items():
            if state is not None:
                layer.conv_states[i] = pick(state)
        for i, state in layer.recurrent_states.items():
            if state is not None:
                layer.recurrent_states[i] = pick(state)
    for layer in _attention_layers(cache):
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys = pick(layer.keys)
            layer.values = pick(layer.values)


def _left_pad(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """Zero-pad `tensor` on the left of `dim` up to `width`."""
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
