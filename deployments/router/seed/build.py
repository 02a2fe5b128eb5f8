"""Generate the router's labeled seed set: `python -m deployments.router.seed.build [--out PATH]`.

Deterministic (fixed seed): running it again gives the same bytes. Each template yields `count`
distinct prompts labeled with the template's size; rows of held-out templates form the `heldout`
split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from random import Random
from typing import Any

from deployments.router.seed.template import Template
from deployments.router.seed.templates_0_8b import TEMPLATES_0_8B
from deployments.router.seed.templates_2b import TEMPLATES_2B
from deployments.router.seed.templates_4b import TEMPLATES_4B
from deployments.router.seed.templates_9b import TEMPLATES_9B

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data" / "seed.jsonl"
SEED = 20260515
# How many draws a template may take to find `count` distinct prompts before giving up on the rest.
MAX_DRAWS_PER_ROW = 40


def all_templates() -> tuple[Template, ...]:
    """Every template, small sizes first.

    Raises:
        ValueError: when two templates share a name.
    """
    templates = TEMPLATES_0_8B + TEMPLATES_2B + TEMPLATES_4B + TEMPLATES_9B
    names = [t.name for t in templates]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"template names must be unique; repeated: {repeated}")
    return templates


def _key(row: dict[str, Any]) -> str:
    return json.dumps({k: row[k] for k in ("prompt", "messages", "images") if k in row}, sort_keys=True)


def generate(seed: int = SEED) -> list[dict[str, Any]]:
    """All seed rows, in template order."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for template in all_templates():
        rng = Random(f"{seed}:{template.name}")
        made = 0
        for _ in range(template.count * MAX_DRAWS_PER_ROW):
            if made == template.count:
                break
            row = template.make(rng)
            key = _key(row)
            if key in seen:
                continue
            seen.add(key)
            made += 1
            rows.append(
                {
                    **row,
                    "size": template.size,
                    "category": template.category,
                    "template": template.name,
                    "split": "heldout" if template.heldout else "train",
                }
            )
    return rows


def write(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as JSONL (UTF-8, one object per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Generate the seed set and print its composition."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSONL")
    args = parser.parse_args(argv)
    rows = generate()
    write(rows, args.out)
    print(f"wrote {len(rows)} rows to {args.out}")
    for split in ("train", "heldout"):
        counts = {
            size: sum(1 for r in rows if r["split"] == split and r["size"] == size)
            for size in ("0.8b", "2b", "4b", "9b")
        }
        print(f"  {split}: " + ", ".join(f"{size}={n}" for size, n in counts.items()))
    short = [t.name for t in all_templates() if sum(1 for r in rows if r["template"] == t.name) < t.count]
    if short:
        print(f"  templates with fewer distinct prompts than asked: {', '.join(short)}")


if __name__ == "__main__":
    main()
