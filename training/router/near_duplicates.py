"""Share of near-duplicate pairs in the router's training prompts: `python training/router/near_duplicates.py`.

Embeds every row (prompt plus image descriptor) with MiniLM (all six layers, int8, the first 32 word
pieces: a sentence embedding, not the routing heads' two-layer one), then counts, over all pairs of
rows, those whose cosine is above each threshold, and how many of those share a template (the slot
changed a word or a number) rather than being two different phrasings that say the same thing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from deployments.router.embeddings import SentenceEmbedder  # noqa: E402

THRESHOLDS = (0.9, 0.95)


def pair_counts(
    embeddings: np.ndarray, phrasings: list[str], thresholds=THRESHOLDS, block: int = 512
) -> dict:
    """Pairs (i < j) above each threshold, and how many of them share a phrasing (template), counted
    block by block so the full similarity matrix is never held."""
    labels = np.array(phrasings)
    counts = {t: {"pairs": 0, "same_template": 0} for t in thresholds}
    n = len(embeddings)
    for start in range(0, n, block):
        stop = min(n, start + block)
        sims = embeddings[start:stop] @ embeddings.T
        rows, cols = np.nonzero(sims > min(thresholds))
        later = cols > rows + start  # each pair once (i < j), never a row with itself
        rows, cols = rows[later], cols[later]
        values = sims[rows, cols]
        same = labels[rows + start] == labels[cols]
        for t in thresholds:
            above = values > t
            counts[t]["pairs"] += int(above.sum())
            counts[t]["same_template"] += int((above & same).sum())
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", default=HERE / "data" / "prompts.jsonl")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    texts = [row["prompt"] + (" " + row["image"] if row.get("image") else "") for row in rows]
    embedder = SentenceEmbedder(max_tokens=32, int8=True, layers=6)
    embeddings = embedder.encode(texts)
    total = len(rows) * (len(rows) - 1) // 2
    print(f"{len(rows)} rows, {total:,} pairs (MiniLM, six layers, int8, 32 word pieces)")
    for threshold, found in pair_counts(embeddings, [row["phrasing"] for row in rows]).items():
        pairs = found["pairs"]
        same = found["same_template"] / pairs if pairs else 0.0
        print(
            f"cosine > {threshold}: {pairs} pairs ({100 * pairs / total:.3f}% of pairs), "
            f"{100 * same:.1f}% of them within one template, {pairs - found['same_template']} across templates"
        )


if __name__ == "__main__":
    main()
