"""A small correctness-labelled set for APGR: `python training/router/simulate_correct.py`.

No real model answers are available offline (the demo checkpoints have random weights), so these
labels are SIMULATED, not graded answers: for rows of the family-held-out split, each size's
`correct` is drawn from the model-card prior P(correct | the row's labelled group and level, size)
(deployments/router/artifacts/size_priors.json). APGR on this set measures whether the router's
estimated gap ranks "the larger size helps" the way the priors say it should, on prompts whose
family it never saw; it is no substitute for `router label` against real weights.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1]))

from deployments.router.quality import prior_table  # noqa: E402

PER_PHRASING = 4


def main(seed: int = 0) -> None:
    rng = random.Random(seed)
    table = prior_table()
    taken: dict[str, int] = {}
    out = []
    for line in (HERE / "data" / "prompts.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["split"] != "heldout_family" or taken.get(row["phrasing"], 0) >= PER_PHRASING:
            continue
        taken[row["phrasing"]] = taken.get(row["phrasing"], 0) + 1
        cell = table.cells[row["group"]][row["level"]]
        row["correct"] = {size: int(rng.random() < p) for size, p in cell.items()}
        row["labels"] = "simulated from model-card priors (not graded answers)"
        out.append(row)
    path = HERE / "data" / "correct_simulated.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out))
    print(f"{len(out)} simulated correctness rows -> {path}")


if __name__ == "__main__":
    main()
