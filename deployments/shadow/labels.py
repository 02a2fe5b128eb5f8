"""The label record: one per sampled `auto` request, with every size's answer statistics.

Schema version 1, one Parquet row per record:

- identity: `schema_version`, `record_id` (unique), `request_hash` (sha256 of the request's messages or
  prompt and sampling settings: the same request hashes the same), `created_at` (UTC), `endpoint`;
- router inputs: `scorer`, `family`, `difficulty`, `features_json` (the scorer's features), the
  per-size estimates the policy used (`estimates_json`) and the scorer's own before any calibration
  (`raw_estimates_json`), `routed_size`, `route_reason`;
- `reference_size` (the largest size that answered) and `verifiable` (how answers were compared);
- `answers`: per size, the user's answer first then the shadow answers: `outcome`, a sha256 `digest`
  of the answer, `finish_reason`, `completion_tokens`, per-token probability quantiles (q05, q10,
  q25, q50, min; Gupta et al. 2024) and the mean log-probability (kept for comparison only),
  `agreement` (how it was compared with the reference) and `correct` (agrees with the reference;
  null when unknown, as for the reference itself unless a judge said);
- `prompt_text` and each answer's `text` only when `router.shadow.store_text` is on (privacy).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from deployments.router.escalation import token_prob_quantile

SCHEMA_VERSION = 1
QUANTILES = (0.05, 0.10, 0.25, 0.50)

ANSWER_TYPE = pa.struct(
    [
        ("size", pa.string()),
        ("source", pa.string()),
        ("outcome", pa.string()),
        ("digest", pa.string()),
        ("finish_reason", pa.string()),
        ("completion_tokens", pa.int32()),
        ("prob_q05", pa.float64()),
        ("prob_q10", pa.float64()),
        ("prob_q25", pa.float64()),
        ("prob_q50", pa.float64()),
        ("prob_min", pa.float64()),
        ("mean_logprob", pa.float64()),
        ("agreement", pa.string()),
        ("correct", pa.bool_()),
        ("text", pa.string()),
    ]
)

LABEL_SCHEMA = pa.schema(
    [
        ("schema_version", pa.int32()),
        ("record_id", pa.string()),
        ("request_hash", pa.string()),
        ("created_at", pa.timestamp("ms", tz="UTC")),
        ("endpoint", pa.string()),
        ("scorer", pa.string()),
        ("family", pa.string()),
        ("difficulty", pa.float64()),
        ("features_json", pa.string()),
        ("estimates_json", pa.string()),
        ("raw_estimates_json", pa.string()),
        ("routed_size", pa.string()),
        ("route_reason", pa.string()),
        ("reference_size", pa.string()),
        ("verifiable", pa.string()),
        ("prompt_text", pa.string()),
        ("answers", pa.list_(ANSWER_TYPE)),
    ],
    metadata={"qwen.label_schema_version": str(SCHEMA_VERSION)},
)


def digest(text: str) -> str:
    """sha256 hex of a text."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def request_hash(endpoint: str, messages: Any, prompt: str | None, sampling: dict[str, Any]) -> str:
    """sha256 of the request's content and sampling settings (stable across processes)."""
    body = {"endpoint": endpoint, "messages": messages, "prompt": prompt, "sampling": sampling}
    return digest(json.dumps(body, sort_keys=True, default=str, ensure_ascii=False))


def probability_stats(logprobs: Sequence[float]) -> dict[str, float | None]:
    """Quantiles of per-token probability (`prob_q05` ... `prob_q50`, `prob_min`) and the mean
    log-probability; all None for an empty answer."""
    if not logprobs:
        return {f"prob_q{round(q * 100):02d}": None for q in QUANTILES} | {
            "prob_min": None,
            "mean_logprob": None,
        }
    stats: dict[str, float | None] = {
        f"prob_q{round(q * 100):02d}": token_prob_quantile(logprobs, q) for q in QUANTILES
    }
    stats["prob_min"] = math.exp(min(0.0, min(logprobs)))
    stats["mean_logprob"] = sum(logprobs) / len(logprobs)
    return stats


def answer_entry(
    size: str,
    source: str,
    outcome: str,
    result: Any | None = None,
    store_text: bool = False,
) -> dict[str, Any]:
    """One `answers` element; `result` is a `GenerationResult` (None when the size did not answer)."""
    entry: dict[str, Any] = {
        "size": size,
        "source": source,
        "outcome": outcome,
        "digest": None,
        "finish_reason": None,
        "completion_tokens": None,
        "agreement": None,
        "correct": None,
        "text": None,
    }
    entry |= probability_stats(result.logprobs if result is not None else ())
    if result is not None:
        entry |= {
            "digest": digest(result.text),
            "finish_reason": result.finish_reason,
            "completion_tokens": result.completion_tokens,
            "text": result.text if store_text else None,
        }
    return entry


def to_table(records: Sequence[dict[str, Any]]) -> pa.Table:
    """Records as a table of `LABEL_SCHEMA`.

    Raises:
        pyarrow.ArrowInvalid / ArrowTypeError: for a record that does not fit the schema.
    """
    return pa.Table.from_pylist(list(records), schema=LABEL_SCHEMA)
