"""The retrain's pieces without Ray: reading label files, the refit, its gate, the escalation threshold."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deployments.router.calibration import Calibration, SizeCurve
from deployments.shadow.labels import to_table
from pipelines.router_training.confidence import escalation_threshold
from pipelines.router_training.refit import held_out_requests, refit_and_gate
from pipelines.router_training.shadow_labels import read_label_file
from tests.support import shadow_sim as sim

pytestmark = pytest.mark.unit


def parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def test_bad_files_are_skipped_with_a_count_and_good_ones_give_rows():
    rows, counts = read_label_file("good", parquet(to_table(sim.records(50))))
    assert counts.records == 50 and counts.rows == len(rows) > 50
    assert {r["size"] for r in rows} <= set(sim.SIZES) and all(isinstance(r["correct"], bool) for r in rows)
    _, cut = read_label_file("cut", parquet(to_table(sim.records(5)))[:40])
    assert cut.skipped_corrupt == 1 and cut.records == 0
    other = pa.table({"schema_version": pa.array([2], pa.int32())})
    _, version = read_label_file("v2", parquet(other))
    assert version.skipped_schema == 1 and "this job reads version 1" in version.problems[0]


def test_refit_recovers_the_simulated_curves_and_passes_the_gate():
    records = sim.records(4000, seed=3)
    rows, _ = read_label_file("sim", parquet(to_table(records)))
    gate = refit_and_gate(rows, None, "features")
    assert gate.accepted
    assert gate.figures["heldout_log_loss_candidate"] < gate.figures["heldout_log_loss_current"]
    errors = sim.curve_error(gate.candidate, rows)
    assert max(errors.values()) < 0.1, errors  # 4,000 records here; the bench's 10,000 give < 0.05
    assert max(sim.curve_error(None, rows).values()) > 0.3


def test_the_gate_keeps_a_calibration_that_is_already_right():
    rows, _ = read_label_file("sim", parquet(to_table(sim.records(3000, seed=4))))
    exact = Calibration({s: SizeCurve(-10 / 3, 5 / 3, 1 / 6) for s in sim.SIZES}, "features")
    gate = refit_and_gate(rows, exact, "features", min_gain=0.01)
    assert not gate.accepted and "does not beat" in gate.figures["reason"]


def test_the_escalation_threshold_reaches_its_target_and_says_what_it_costs():
    rows, _ = read_label_file("sim", parquet(to_table(sim.records(2000, seed=5))))
    report = escalation_threshold(rows, 0.75)
    assert report["kept_accuracy"] >= 0.75 > report["accuracy_without"]
    assert 0 < report["share_escalated"] < 1 and report["extra_tokens_per_request"] > 0
    assert escalation_threshold([], 0.8)["min_token_prob"] is None


def test_labels_all_on_one_side_still_fit_and_move_the_curve():
    # The demo's random weights never agree: every label is "wrong" and the estimates are high.
    # Plain Newton oscillates there; the fit must still move toward the labels, finitely.
    import numpy as np

    from pipelines.router_training.refit import fit_curve, predict

    curve = fit_curve(np.full(4, 0.99), np.full(4, 0.1), np.zeros(4), SizeCurve(), l2=1.0)
    assert all(np.isfinite([curve.intercept, curve.slope, curve.difficulty_weight]))
    assert predict(curve, np.array([0.99]), np.array([0.1]))[0] < 0.5


@pytest.mark.parametrize("count", [2, 3, 8, 9, 40])
@pytest.mark.parametrize("share", [0.05, 0.2, 0.5, 0.95])
def test_the_held_out_slice_is_an_exact_share_with_both_sides_filled(count, share):
    hashes = [f"request-{i}" for i in range(count)]
    held = held_out_requests(hashes + hashes[:3], share)  # a request with several rows counts once
    assert 1 <= len(held) <= count - 1
    assert len(held) == min(max(round(share * count), 1), count - 1)
    # The same labels in another order give the same slice.
    assert held_out_requests(reversed(hashes), share) == held


def test_few_labels_still_train_and_gate_at_half_held_out():
    # Eight one-sided labels at share 0.5: four train, four judge (a coin flip per request left
    # one row to train on in one CI run, and the gate then judged nothing).
    rows = [
        {"request_hash": f"r{i}", "size": "0.8b", "estimate": 0.9, "difficulty": 0.1, "correct": False}
        for i in range(8)
    ]
    result = refit_and_gate(rows, None, "heuristic", holdout_share=0.5, min_rows_per_size=2)
    assert result.figures["train_rows"] == 4 and result.figures["heldout_rows"] == 4
    assert result.accepted


def test_records_of_another_scorer_are_skipped_with_a_count():
    records = sim.records(20)
    for record in records[:5]:
        record["scorer"] = "irt"  # labelled while another scorer was running
    rows, counts = read_label_file("mixed", parquet(to_table(records)), scorer="features")
    assert counts.skipped_other_scorer == 5 and counts.records == 20
    assert len({r["request_hash"] for r in rows}) == 15


def test_the_retrain_writes_the_escalation_threshold_into_the_artifact(tmp_path, monkeypatch):
    from deployments.router.calibration import EscalationThreshold, parse_calibration
    from pipelines.router_training import retrain as job

    rows, _ = read_label_file("sim", parquet(to_table(sim.records(4000, seed=3))))
    monkeypatch.setattr(job, "read_labels", lambda *args, **kwargs: (rows, {"records": 4000}))
    common = {"scorer": "features", "served": tuple(sim.SIZES), "current_uri": None, "target_quality": 0.75}
    out = tmp_path / "calibration.json"
    report = job.retrain("s3://labels/shadow/", out_uri=str(out), **common)
    assert report["accepted"] and report["written"] == str(out)
    escalation = report["escalation"]
    assert escalation["min_token_prob"] is not None and escalation["in_artifact"] is True
    artifact = parse_calibration(out.read_bytes(), served_sizes=sim.SIZES, scorer="features")
    assert artifact.escalation == EscalationThreshold(escalation["min_token_prob"], 0.1, 0.75)
    assert artifact.report["escalation"]["share_escalated"] == escalation["share_escalated"]

    # Labels that call for no threshold (no user answer with probabilities): the artifact carries
    # none, so an ingress keeps its configured min_token_prob.
    for row in rows:
        row["prob_q10"] = None
    bare = tmp_path / "bare.json"
    report = job.retrain("s3://labels/shadow/", out_uri=str(bare), **common)
    assert report["written"] == str(bare) and report["escalation"]["in_artifact"] is False
    assert parse_calibration(bare.read_bytes()).escalation is None
    assert "escalation" not in json.loads(bare.read_text())
