"""Generate the router's training prompts from the pattern files: `python training/router/generate.py`.

Each family file in patterns/ lists templates (with their difficulty level and language) and slot
values; components.yaml holds the pieces that long documents and paragraphs are assembled from.
Every row carries its family, task group, level (0 trivial .. 3 hard), the rubric size (the smallest
size expected to answer it well: level 0 -> 0.8b ... 3 -> 9b), its language and its split:
`heldout_family` (whole families never trained on), `heldout_phrasing` (templates never trained on)
or `train`. The output is deterministic for a seed.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import re
from pathlib import Path

import yaml

HERE = Path(__file__).parent
SIZES = ("0.8b", "2b", "4b", "9b")
# Families held out whole: one or more per task group stays in training, so what is measured is
# generalisation to a new kind of request within known groups, not memory of a template.
HELDOUT_PHRASING_SHARE = 0.2
ROWS_PER_TEMPLATE = 26
_SLOT = re.compile(r"\{(\w+)(?::(\d+)-(\d+))?\}")
_RANGE = re.compile(r"\{int:(\d+)-(\d+)\}")


def _page(rng: random.Random, components: dict) -> str:
    sentences = rng.sample(components["page_sentences"], rng.randint(8, 22))
    title = rng.choice(components["page_titles"])
    paragraphs = [" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)]
    return title + "\n\n" + "\n\n".join(paragraphs)


def _fill(text: str, slots: dict, rng: random.Random, components: dict) -> str:
    def replace(match: re.Match) -> str:
        name, low, high = match.groups()
        if low is not None:
            return str(rng.randint(int(low), int(high)))
        if name == "page":
            return _page(rng, components)
        if name in ("paragraph", "paragraph_foreign"):
            return rng.choice(components["paragraphs" if name == "paragraph" else "paragraphs_foreign"])
        if name not in slots:
            raise KeyError(f"unknown slot {{{name}}} in template {text[:60]!r}")
        # A slot value may itself hold a number range ({int:a-b}); other braces in it are literal.
        value = str(rng.choice(slots[name]))
        return _RANGE.sub(lambda m: str(rng.randint(int(m.group(1)), int(m.group(2)))), value)

    filled = _SLOT.sub(replace, text)
    return filled.replace("{{", "{").replace("}}", "}")


def _stable_share(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def generate(seed: int = 0, rows_per_template: int = ROWS_PER_TEMPLATE) -> list[dict]:
    """All rows, deterministic for `seed`. Each template draws from its own generator (seeded by the
    seed and the template id), so adding or editing a template leaves every other row as it was."""
    components = yaml.safe_load((HERE / "components.yaml").read_text())
    rows: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for path in sorted((HERE / "patterns").glob("*.yaml")):
        for family, spec in yaml.safe_load(path.read_text())["families"].items():
            slots = {**spec.get("slots", {}), **spec.get("extra_slots", {})}
            for template in spec["templates"]:
                # A template varies when its text or its image descriptor has a slot.
                pattern = template["text"] + template.get("image", "")
                variable = bool(_SLOT.search(pattern))
                wanted = rows_per_template if variable else 1
                phrasing = f"{family}/{template['id']}"
                # Whole held-out families are marked after generation (heldout_families).
                split = "heldout_phrasing" if _stable_share(phrasing) < HELDOUT_PHRASING_SHARE else "train"
                rng = random.Random(f"{seed}/{phrasing}")
                made = 0
                for _ in itertools.repeat(None, wanted * 6):
                    if made >= wanted:
                        break
                    text = _fill(template["text"], slots, rng, components)
                    image = _fill(template.get("image", ""), slots, rng, components)
                    if (text, image) in seen:
                        continue
                    seen.add((text, image))
                    made += 1
                    level = int(template["level"])
                    row = {
                        "prompt": text,
                        "family": family,
                        "group": spec["group"],
                        "level": level,
                        "size": SIZES[level],
                        "lang": template.get("lang", "en"),
                        "phrasing": phrasing,
                        "split": split,
                    }
                    if template.get("images"):
                        row["images"] = int(template["images"])
                        row["image"] = image
                    rows.append(row)
    held = heldout_families(rows)
    for row in rows:
        if row["family"] in held:
            row["split"] = "heldout_family"
    return rows


def heldout_families(rows: list[dict]) -> set[str]:
    """The families held out whole, by a rule that never looks at a router's score: in every task
    group with two or more families, the family whose rows cover the most rubric sizes (ties: fewer
    rows, then name). Covering sizes is what lets the held-out split measure every size (trivial
    rows included); one family per group keeps every group's other families in training."""
    by_group: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        by_group.setdefault(row["group"], {}).setdefault(row["family"], []).append(row)
    held = set()
    for families in by_group.values():
        if len(families) < 2:
            continue
        held.add(
            min(families, key=lambda f: (-len({r["size"] for r in families[f]}), len(families[f]), f))
        )
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "data" / "prompts.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = generate(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    families = {r["family"] for r in rows}
    by_level = [sum(r["level"] == k for r in rows) for k in range(4)]
    splits = {s: sum(r["split"] == s for r in rows) for s in ("train", "heldout_phrasing", "heldout_family")}
    print(f"{len(rows)} rows, {len(families)} families, levels {by_level}, splits {splits} -> {args.out}")


if __name__ == "__main__":
    main()
