"""A stand-in sentence embedder for router tests."""

from __future__ import annotations

import hashlib

import numpy as np


class HashingEmbedder:
    """A deterministic bag-of-words embedder: fast, needs no model, and carries real signal."""

    def __init__(self, dim: int):
        self.dim = dim

    def encode(self, texts, batch_size=32):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out
