"""Label records, agreement checks, the hourly writer, the calibration artifact and its reloader."""

import asyncio
import json
import math
import os
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from cluster.router_config import EscalationConfig, RouterConfig
from cluster.shadow_config import ShadowConfig
from deployments.object_store import ObjectStore
from deployments.router import agreement
from deployments.router.calibration import Calibration, EscalationThreshold, SizeCurve, parse_calibration
from deployments.router.escalation import escalation_reason, token_prob_quantile
from deployments.router.reload import CalibrationReloader
from deployments.router.router import Router
from deployments.shadow.labels import LABEL_SCHEMA, SCHEMA_VERSION, answer_entry, probability_stats
from deployments.shadow.runner import shadow_sizes
from deployments.shadow.writer import LabelWriter, file_uri

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("reference", "answer", "kind", "agrees"),
    [
        ('{"a": 1, "b": [2, 3]}', '```json\n{"b": [2, 3], "a": 1}\n```', "json", True),
        ('{"a": 1}', '{"a": 2}', "json", False),
        ("B", "The answer is (B)", "choice", True),
        ("(C)", "D", "choice", False),
        ("#### 1,234", "so the total is 1234", "numeric", True),
        ("<think>long</think>\n42", "41", "numeric", False),
        ("Paris.", "paris", "exact", True),
        ("Lyon", "Paris", "exact", False),
    ],
)
def test_verifiable_answers_are_compared_by_their_kind(reference, answer, kind, agrees):
    assert agreement.verifiable_kind(reference) == kind
    assert agreement.agree(kind, answer, reference) is agrees


def test_free_text_is_not_verifiable_and_the_judge_reply_is_read_strictly():
    essay = "The French Revolution had many causes, among them fiscal crisis, Enlightenment ideas and bad harvests."
    assert agreement.verifiable_kind(essay) == "none"
    assert agreement.agree("none", essay, essay) is None
    assert agreement.judge_verdict("YES.") is True
    assert agreement.judge_verdict("no") is False
    assert agreement.judge_verdict("maybe") is None


def test_probability_quantiles_do_not_drift_with_length_as_the_mean_does():
    # One unsure token (p = 0.01) among confident ones: the mean log-probability of a long answer
    # hides it, a low quantile of a short one shows it; q50 is the same for both.
    short = [math.log(0.9)] * 9 + [math.log(0.01)]
    long = [math.log(0.9)] * 199 + [math.log(0.01)]
    s, lg = probability_stats(short), probability_stats(long)
    assert s["prob_q50"] == pytest.approx(0.9) and lg["prob_q50"] == pytest.approx(0.9)
    assert s["prob_min"] == pytest.approx(0.01) == lg["prob_min"]
    assert s["mean_logprob"] < lg["mean_logprob"]
    assert probability_stats([])["prob_q10"] is None
    assert token_prob_quantile([math.log(0.5), math.log(1.0)], 0.5) == pytest.approx(0.75)


def test_escalation_reads_the_token_probability_quantile():
    confident = [math.log(0.95)] * 50
    unsure = [math.log(0.95)] * 40 + [math.log(0.01)] * 10
    on = EscalationConfig(enabled=True, token_prob_quantile=0.1, min_token_prob=0.05)
    common = {
        "mean_logprob": -0.1,
        "finish_reason": "stop",
        "thinking_unfinished": False,
        "completion_text": "x",
    }
    assert escalation_reason(on, token_logprobs=confident, **common) is None
    assert escalation_reason(on, token_logprobs=unsure, **common) == "low_confidence"
    # Old configs still load and their mean rule still applies when set.
    legacy = RouterConfig.model_validate({"escalation": {"enabled": True, "min_mean_logprob": -0.05}})
    assert escalation_reason(legacy.escalation, token_logprobs=confident, **common) == "low_confidence"


def test_shadow_sizes_default_to_one_up_and_the_largest():
    served = ["0.8b", "2b", "4b", "9b"]
    assert shadow_sizes("0.8b", served, "up_and_largest") == ["2b", "9b"]
    assert shadow_sizes("4b", served, "up_and_largest") == ["9b"]
    assert shadow_sizes("9b", served, "up_and_largest") == []
    assert shadow_sizes("0.8b", served, "all_larger") == ["2b", "4b", "9b"]
    assert shadow_sizes("0.8b", ["0.8b", "2b"], "largest") == ["2b"]


def test_shadow_config_needs_an_output_when_on_and_stores_no_text_by_default():
    with pytest.raises(ValueError, match="output is required"):
        ShadowConfig(enabled=True)
    with pytest.raises(ValueError, match="s3:// URI or a local folder"):
        ShadowConfig(output="gs://bucket/x")
    config = ShadowConfig(enabled=True, output="s3://labels/shadow")
    assert config.store_text is False and config.sample_rate == 0.01


def record(hour: int, n: int = 0) -> dict:
    entry = answer_entry("0.8b", "user", "answered")
    return {
        "schema_version": SCHEMA_VERSION,
        "record_id": f"r{hour}-{n}",
        "request_hash": "h",
        "created_at": datetime(2026, 12, 6, hour, 30, tzinfo=UTC),
        "endpoint": "chat",
        "scorer": "features",
        "family": None,
        "difficulty": 0.5,
        "features_json": "{}",
        "estimates_json": "{}",
        "raw_estimates_json": "{}",
        "routed_size": "0.8b",
        "route_reason": "quality",
        "reference_size": "0.8b",
        "verifiable": "none",
        "prompt_text": None,
        "answers": [entry],
    }


class Clock:
    def __init__(self, hour: int):
        self.now = datetime(2026, 12, 6, hour, 31, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def test_writer_writes_each_finished_hour_once_atomically(tmp_path):
    clock = Clock(1)
    writer = LabelWriter(str(tmp_path), ObjectStore(), writer_id="w1", clock=clock)

    async def main():
        writer.add(record(1, 0))
        writer.add(record(1, 1))
        assert await writer.flush() == []  # the hour is not over
        clock.now += 3600
        writer.add(record(2, 0))
        first = await writer.flush()
        again = await writer.flush()
        return first, again

    first, again = asyncio.run(main())
    assert first == [file_uri(str(tmp_path), "2026-12-06T01", "w1", 0)] and again == []
    table = pq.read_table(first[0])
    assert table.schema.equals(LABEL_SCHEMA, check_metadata=False)
    assert table.column("record_id").to_pylist() == ["r1-0", "r1-1"]
    assert list(writer.buffers) == ["2026-12-06T02"]  # the open hour stays buffered
    files = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs]
    assert files == first  # no temporary left behind


def test_a_failed_write_keeps_the_records_and_retries_under_the_same_name(tmp_path):
    class Flaky(ObjectStore):
        fail = True

        def write_atomic(self, uri, data):
            if self.fail:
                self.fail = False
                raise OSError("endpoint down")
            super().write_atomic(uri, data)

    writer = LabelWriter(str(tmp_path), Flaky(), max_buffer_s=0.0, writer_id="w2", clock=Clock(3))

    async def main():
        writer.add(record(3))
        failed = await writer.flush()
        retried = await writer.flush()
        return failed, retried

    failed, retried = asyncio.run(main())
    assert failed == [] and writer.failed_writes == 1
    assert retried == [file_uri(str(tmp_path), "2026-12-06T03", "w2", 0)]
    assert writer.written_records == 1 and not writer.buffers


def test_a_killed_writer_leaves_no_partial_file(tmp_path, monkeypatch):
    # The process dies inside the write (after the temporary file, before the rename).
    def die(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        ObjectStore().write_atomic(str(tmp_path / "date=x" / "labels-w-0000.parquet"), b"PAR1")
    assert [f for _, _, fs in os.walk(tmp_path) for f in fs] == []


def calibration_text(scorer="features", sizes=("0.8b",), version="v1", escalation=None):
    curves = {s: SizeCurve(0.5, 1.2, -0.3) for s in sizes}
    return Calibration(curves, scorer, version, escalation=escalation).to_json()


def test_calibration_round_trips_and_refuses_what_does_not_fit():
    parsed = parse_calibration(calibration_text(), served_sizes=["0.8b", "2b"], scorer="features")
    assert parsed.curves["0.8b"] == SizeCurve(0.5, 1.2, -0.3)
    calibrated = parsed.apply({"0.8b": 0.6, "2b": 0.7}, 0.4)
    assert calibrated["2b"] == 0.7 and calibrated["0.8b"] != 0.6
    for text, problem in [
        ("{", "not JSON"),
        (json.dumps({"kind": "other"}), "not a router calibration"),
        (calibration_text().replace('"schema_version": 1', '"schema_version": 9'), "schema_version"),
        (calibration_text(scorer="learned"), "scorer"),
        (calibration_text(sizes=("9b",)), "not served"),
        (calibration_text().replace("1.2", "NaN"), "not finite"),
    ]:
        with pytest.raises(ValueError, match=problem):
            parse_calibration(text, served_sizes=["0.8b", "2b"], scorer="features")


def test_the_escalation_threshold_round_trips_and_an_artifact_without_it_still_loads():
    threshold = EscalationThreshold(0.12, 0.1, 0.8)
    text = calibration_text(escalation=threshold)
    assert json.loads(text)["escalation"] == {
        "min_token_prob": 0.12,
        "token_prob_quantile": 0.1,
        "target_quality": 0.8,
    }
    assert parse_calibration(text, served_sizes=["0.8b"], scorer="features").escalation == threshold
    # Written before the field existed (same schema version, no key) or with null: no threshold.
    old = calibration_text()
    assert "escalation" not in json.loads(old) and json.loads(old)["schema_version"] == 1
    assert parse_calibration(old).escalation is None
    body = json.loads(old) | {"escalation": None}
    assert parse_calibration(json.dumps(body)).escalation is None
    partial = json.loads(old) | {"escalation": {"min_token_prob": 0}}
    assert parse_calibration(json.dumps(partial)).escalation == EscalationThreshold(0.0, 0.1, None)


@pytest.mark.parametrize(
    ("escalation", "problem"),
    [
        ({"min_token_prob": 1.5}, r"min_token_prob 1.5 is outside \[0, 1\]"),
        ({"min_token_prob": -0.01}, "outside"),
        ({"min_token_prob": "0.1"}, "must be a finite number"),
        ({"min_token_prob": True}, "must be a finite number"),
        ({"min_token_prob": float("nan")}, "must be a finite number"),
        ({"min_token_prob": 0.1, "token_prob_quantile": 1.0}, r"token_prob_quantile 1.0 is outside \(0, 1\)"),
        ({"min_token_prob": 0.1, "target_quality": 2}, "target_quality"),
        ({"token_prob_quantile": 0.1}, "object with min_token_prob"),
        (0.1, "object with min_token_prob"),
    ],
)
def test_an_escalation_threshold_out_of_range_is_refused(escalation, problem):
    body = json.loads(calibration_text()) | {"escalation": escalation}
    with pytest.raises(ValueError, match=problem):
        parse_calibration(json.dumps(body), served_sizes=["0.8b"], scorer="features")


def test_reload_applies_the_artifacts_threshold_when_the_config_allows_it(tmp_path, caplog):
    def routers(**escalation):
        config = RouterConfig(enabled=True, scorer="features", escalation={"enabled": True, **escalation})
        router = Router(config, ["0.8b", "2b"])
        return router, CalibrationReloader(router, str(tmp_path / "calibration.json"), ObjectStore())

    on, on_reloader = routers(min_token_prob=0.05, threshold_from_artifact=True)
    off, off_reloader = routers(min_token_prob=0.05)
    assert on.min_token_prob == off.min_token_prob == 0.05  # nothing loaded yet: the configured one
    (tmp_path / "calibration.json").write_text(calibration_text(escalation=EscalationThreshold(0.3)))
    assert on_reloader.check() == off_reloader.check() == "loaded"
    assert on.min_token_prob == 0.3 and off.min_token_prob == 0.05
    # Applied where it counts: an answer whose 0.1 quantile is 0.2 now escalates on `on` only.
    decision = on.route(prompt="hi there")
    assert decision.size == "0.8b"
    answer = {
        "mean_logprob": -0.5,
        "finish_reason": "stop",
        "thinking_unfinished": False,
        "completion_text": "x",
        "token_logprobs": [math.log(0.2)] * 10,
    }
    assert on.escalation(decision, **answer) == "low_confidence"
    assert off.escalation(decision, **answer) is None
    # Hot reload: a newer artifact's threshold replaces it; one without a threshold gives the config's back.
    (tmp_path / "calibration.json").write_text(
        calibration_text(version="v2", escalation=EscalationThreshold(0.1))
    )
    assert on_reloader.check() == "loaded" and on.min_token_prob == 0.1
    assert on.escalation(decision, **answer) is None
    (tmp_path / "calibration.json").write_text(calibration_text(version="v3"))
    assert on_reloader.check() == "loaded" and on.min_token_prob == 0.05
    # A threshold chosen on another quantile than the config's is not applied, and it is said once.
    other, other_reloader = routers(token_prob_quantile=0.25, threshold_from_artifact=True)
    (tmp_path / "calibration.json").write_text(
        calibration_text(version="v4", escalation=EscalationThreshold(0.3))
    )
    with caplog.at_level("WARNING"):
        assert other_reloader.check() == "loaded"
        assert other_reloader.check() == "unchanged"
    assert other.calibration.version == "v4" and other.min_token_prob == 0.05
    assert (
        sum("not applying the calibration's escalation threshold" in r.message for r in caplog.records) == 1
    )


def test_a_hot_reloaded_threshold_out_of_range_is_refused_and_the_old_artifact_kept(tmp_path, caplog):
    config = RouterConfig(
        enabled=True, scorer="features", escalation={"enabled": True, "threshold_from_artifact": True}
    )
    router = Router(config, ["0.8b", "2b"])
    path = tmp_path / "calibration.json"
    reloader = CalibrationReloader(router, str(path), ObjectStore())
    path.write_text(calibration_text(version="v1", escalation=EscalationThreshold(0.2)))
    assert reloader.check() == "loaded" and router.min_token_prob == 0.2
    body = json.loads(calibration_text(version="v2")) | {"escalation": {"min_token_prob": 7.0}}
    path.write_text(json.dumps(body))
    with caplog.at_level("ERROR"):
        assert reloader.check() == "refused"
        assert reloader.check() == "refused"
    assert (
        sum("refused calibration" in r.message and "min_token_prob" in r.message for r in caplog.records) == 1
    )
    assert router.calibration.version == "v1" and router.min_token_prob == 0.2


def test_reloader_swaps_a_good_artifact_and_refuses_a_bad_one_once(tmp_path, caplog):
    router = Router(RouterConfig(enabled=True, scorer="features"), ["0.8b", "2b"])
    uri = str(tmp_path / "calibration.json")
    reloader = CalibrationReloader(router, uri, ObjectStore(), interval_s=1)
    assert reloader.check() == "missing" and router.calibration is None
    (tmp_path / "calibration.json").write_text(calibration_text(version="v1"))
    assert reloader.check() == "loaded" and router.calibration.version == "v1"
    assert reloader.check() == "unchanged"
    (tmp_path / "calibration.json").write_text(calibration_text(sizes=("9b",), version="v2"))
    with caplog.at_level("ERROR"):
        assert reloader.check() == "refused"
        assert reloader.check() == "refused"
    assert sum("refused calibration" in r.message for r in caplog.records) == 1
    assert router.calibration.version == "v1"  # the old one is kept


def test_the_router_applies_a_calibration_and_keeps_the_raw_estimates():
    router = Router(RouterConfig(enabled=True, scorer="features"), ["0.8b", "2b", "4b", "9b"])
    before = router.route(prompt="Solve 2x + 3 = 11 for x and explain.")
    assert before.raw_estimates == {}
    # Make 0.8b hopeless: the policy must move off it.
    router.calibration = Calibration({"0.8b": SizeCurve(-20.0, 1.0, 0.0)}, "features")
    after = router.route(prompt="Solve 2x + 3 = 11 for x and explain.")
    assert after.raw_estimates == before.estimates
    assert after.estimates["0.8b"] < 0.01 and after.size != "0.8b"


def test_records_added_while_a_file_is_being_written_are_kept(tmp_path):
    # Found by bench/shadow_load.py: 58 sampled, 57 written. The writer encoded a buffer in a
    # thread, a record arrived meanwhile, and the buffer (with it) was dropped after the write.
    clock = Clock(5)

    class Slow(ObjectStore):
        def write_atomic(self, uri, data):
            writer.add(record(5, 99))  # arrives during the write (called from the writer's thread)
            super().write_atomic(uri, data)

    writer = LabelWriter(str(tmp_path), Slow(), max_buffer_s=0.0, writer_id="w3", clock=clock)

    async def main():
        writer.add(record(5, 0))
        await writer.flush()
        await writer.flush()

    asyncio.run(main())
    ids = sorted(
        i for f in tmp_path.rglob("*.parquet") for i in pq.read_table(f).column("record_id").to_pylist()
    )
    assert ids == ["r5-0", "r5-99"] and writer.written_records == 2
