"""The Qwen3.5 small family: what each size is and what it needs.

Figures come from the Qwen3.5 model cards (Hugging Face `Qwen/Qwen3.5-*`). Sizes are ordered from the
cheapest to the most capable; the router and the capacity fallback rely on that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ModelSize = Literal["0.8b", "2b", "4b", "9b"]
Variant = Literal["instruct", "base"]

CONTEXT_LENGTH = 262_144


@dataclass(frozen=True)
class SamplingDefaults:
    """A model card's recommended sampling for one mode (thinking or not)."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float
    presence_penalty: float


# The cards recommend the same settings for every size of the family.
THINKING_SAMPLING = SamplingDefaults(temperature=1.0, top_p=0.95, top_k=20, min_p=0.0, presence_penalty=1.5)
NON_THINKING_SAMPLING = SamplingDefaults(
    temperature=0.7, top_p=0.8, top_k=20, min_p=0.0, presence_penalty=1.5
)


@dataclass(frozen=True)
class ModelSpec:
    """One size of the family.

    Attributes:
        size: short size tag, the key of the catalog.
        public_name: the name clients send in the OpenAI `model` field.
        hf_instruct: Hugging Face id of the post-trained (chat) checkpoint.
        hf_base: Hugging Face id of the pre-trained base checkpoint.
        parameters: parameter count, used for relative cost.
        context_length: native context window in tokens.
        thinking_default: whether thinking is on unless the request says otherwise.
        accelerator_memory_gib: GPU memory one replica needs at bf16 with a useful KV cache.
    """

    size: ModelSize
    public_name: str
    hf_instruct: str
    hf_base: str
    parameters: int
    context_length: int
    thinking_default: bool
    accelerator_memory_gib: float
    sampling_thinking: SamplingDefaults = field(default=THINKING_SAMPLING)
    sampling_non_thinking: SamplingDefaults = field(default=NON_THINKING_SAMPLING)

    def hf_id(self, variant: Variant) -> str:
        """The Hugging Face id of this size's `variant` checkpoint."""
        return self.hf_instruct if variant == "instruct" else self.hf_base

    def sampling(self, thinking: bool) -> SamplingDefaults:
        """The card's recommended sampling for the given mode."""
        return self.sampling_thinking if thinking else self.sampling_non_thinking


def _spec(size: ModelSize, tag: str, parameters: int, thinking: bool, memory_gib: float) -> ModelSpec:
    return ModelSpec(
        size=size,
        public_name=f"qwen3.5-{size}",
        hf_instruct=f"Qwen/Qwen3.5-{tag}",
        hf_base=f"Qwen/Qwen3.5-{tag}-Base",
        parameters=parameters,
        context_length=CONTEXT_LENGTH,
        thinking_default=thinking,
        accelerator_memory_gib=memory_gib,
    )


# Memory: bf16 weights (2 bytes per parameter, vision tower included) plus room for the KV cache of
# the full-attention layers at a practical max_model_len; 0.8B and 2B fit together on one 24 GB GPU.
CATALOG: dict[ModelSize, ModelSpec] = {
    "0.8b": _spec("0.8b", "0.8B", 800_000_000, thinking=False, memory_gib=6.0),
    "2b": _spec("2b", "2B", 2_000_000_000, thinking=False, memory_gib=10.0),
    "4b": _spec("4b", "4B", 4_000_000_000, thinking=True, memory_gib=20.0),
    "9b": _spec("9b", "9B", 9_000_000_000, thinking=True, memory_gib=40.0),
}

SIZES: tuple[ModelSize, ...] = tuple(CATALOG)


def spec_for(size_or_name: str) -> ModelSpec:
    """Look a size up by its tag (`2b`) or public name (`qwen3.5-2b`).

    Raises:
        KeyError: naming the valid sizes, when nothing matches.
    """
    key = size_or_name.lower().removeprefix("qwen3.5-")
    if key not in CATALOG:
        valid = ", ".join(s.public_name for s in CATALOG.values())
        raise KeyError(f"unknown Qwen3.5 size {size_or_name!r}; valid: {valid}")
    return CATALOG[key]  # type: ignore[index]


def relative_cost(size: ModelSize) -> float:
    """Cost of one token on `size` relative to the largest size, by parameter count."""
    return CATALOG[size].parameters / CATALOG[SIZES[-1]].parameters
