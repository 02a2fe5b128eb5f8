"""Retraining from simulated shadow labels recovers a known P(correct | difficulty, size).

`python bench/shadow_retrain.py [--records 10000]`

Writes `--records` simulated label records (tests/support/shadow_sim.py states the model) as three
hourly Parquet files in a temporary folder, plus one corrupt file and one of another schema version,
then runs `router retrain`'s own code (`pipelines.router_training.retrain.retrain`, a Ray Data job on
a local Ray) and prints: the read counts (the two bad files skipped), the gate's held-out figures,
the per-size curve error before and after (max |P - true P| over the difficulties each size has labels
for, and over all of [0, 1]), APGR with the scorer's raw estimates, the calibrated ones and the true
model (the ceiling), and the escalation threshold for 0.8 kept accuracy with its cost. Then one JSON
line with every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, when run as a script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from deployments.router.calibration import parse_calibration
    from deployments.shadow.labels import to_table
    from pipelines.router_training.retrain import retrain
    from pipelines.router_training.shadow_labels import fit_rows
    from tests.support import shadow_sim as sim

    records = sim.records(args.records, seed=args.seed)
    folder = Path(tempfile.mkdtemp(prefix="shadow-labels-"))
    third = len(records) // 3
    for hour, part in enumerate((records[:third], records[third : 2 * third], records[2 * third :])):
        target = folder / "date=2026-12-06" / f"hour={hour:02d}" / "labels-sim-0000.parquet"
        target.parent.mkdir(parents=True)
        buffer = io.BytesIO()
        pq.write_table(to_table(part), buffer)
        target.write_bytes(buffer.getvalue())
    (folder / "date=2026-12-06" / "hour=00" / "labels-cut-0000.parquet").write_bytes(b"PAR1 cut short")
    other = pa.table({"schema_version": pa.array([99], pa.int32()), "request_hash": ["x"]})
    pq.write_table(other, folder / "date=2026-12-06" / "hour=01" / "labels-v99-0000.parquet")
    out = folder / "calibration.json"

    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    started = time.perf_counter()
    try:
        report = retrain(
            str(folder),
            scorer="features",
            served=sim.SIZES,
            current_uri=None,
            out_uri=str(out),
        )
    finally:
        ray.shutdown()
    seconds = time.perf_counter() - started
    calibration = parse_calibration(out.read_text()) if report["written"] else None
    rows = [row for record in records for row in fit_rows(record)]

    def raw(d):
        return {s: sim.scorer_estimate(s, d) for s in sim.SIZES}

    figures = {
        "date": "2026-12-06",
        "records": len(records),
        "fit_rows": len(rows),
        "read": {k: v for k, v in report["read"].items() if k != "problems"},
        "accepted": report["accepted"],
        "heldout_log_loss_current": report["gate"]["heldout_log_loss_current"],
        "heldout_log_loss_candidate": report["gate"]["heldout_log_loss_candidate"],
        "curve_error_before_on_labels": sim.curve_error(None, rows),
        "curve_error_after_on_labels": sim.curve_error(calibration, rows),
        "curve_error_after_full_range": sim.curve_error(calibration),
        "apgr_raw": sim.apgr(raw),
        "apgr_calibrated": sim.apgr(lambda d: calibration.apply(raw(d), d)) if calibration else None,
        "apgr_true_model": sim.apgr(lambda d: {s: sim.true_p(s, d) for s in sim.SIZES}),
        "escalation": report["escalation"],
        "retrain_seconds": round(seconds, 1),
    }
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(json.dumps(figures, sort_keys=True))
    worst = max(figures["curve_error_after_on_labels"].values())
    print(
        f"goal: per-size curves within 0.05 where labelled: {'met' if worst <= 0.05 else 'NOT met'} ({worst})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
