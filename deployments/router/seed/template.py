"""A seed-set template: one kind of prompt, its size label and how to fill it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Any

from cluster.catalog import ModelSize


@dataclass(frozen=True)
class Template:
    """One prompt template.

    Attributes:
        name: unique id, stored in each row as `template`.
        category: what kind of request it is (chit-chat, proof, ...), stored as `category`.
        size: the label every row of this template gets (see the rubric in data/README.md).
        count: how many rows to generate.
        heldout: rows of held-out templates form the held-out split, so the reported accuracy is on
            phrasings the classifier never saw.
        make: builds one row's request fields (`prompt` or `messages`, optional `images`).
    """

    name: str
    category: str
    size: ModelSize
    count: int
    heldout: bool
    make: Callable[[Random], dict[str, Any]]
