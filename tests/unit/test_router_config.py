"""RouterConfig validation, and the seed set's composition and reproducibility."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from cluster.config import PROFILES, load_config, parse_config
from cluster.router_config import DEFAULT_THRESHOLDS, RouterConfig
from deployments.router.seed.build import DEFAULT_OUT, generate, write

pytestmark = pytest.mark.unit


def test_defaults_keep_routing_off_and_describe_every_field():
    config = RouterConfig()
    assert (config.enabled, config.fallback_size, config.scorer) == (False, "0.8b", "features")
    assert config.thresholds == DEFAULT_THRESHOLDS
    for model in (RouterConfig, type(config.thinking), type(config.escalation)):
        assert all(field.description for field in model.model_fields.values()), model


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [((0.5, 0.4, 0.8), "non-decreasing"), ((0.1, 0.5, 1.2), r"\[0, 1\]"), ((-0.1, 0.5, 0.7), r"\[0, 1\]")],
)
def test_thresholds_are_validated(thresholds, message):
    with pytest.raises(ValidationError, match=message):
        RouterConfig(thresholds=thresholds)


def test_equal_thresholds_are_allowed():
    assert RouterConfig(thresholds=(0.3, 0.3, 0.9)).thresholds == (0.3, 0.3, 0.9)


@pytest.mark.parametrize(
    "bad",
    [
        {"scorer": "neural"},
        {"capacity_fallback": "sideways"},
        {"blend_learned_weight": 1.5},
        {"thinking": {"mode": "sometimes"}},
        {"thinking": {"min_difficulty": 2}},
        {"escalation": {"min_mean_logprob": 0.5}},
        {"escalation": {"loop_min_repeats": 1}},
        {"escalation": {"typo": True}},
        {"fallback_size": "70b"},
        {"unknown_key": 1},
    ],
)
def test_bad_values_are_rejected(bad):
    with pytest.raises(ValidationError):
        RouterConfig(**bad)


def test_missing_artifact_is_rejected_only_when_it_would_be_loaded(tmp_path):
    missing = tmp_path / "nope.json"
    assert RouterConfig(scorer="learned", artifact_path=missing).artifact_path == missing
    assert RouterConfig(enabled=True, scorer="features", artifact_path=missing).enabled
    with pytest.raises(ValidationError, match="is not a file"):
        RouterConfig(enabled=True, scorer="blend", artifact_path=missing)


def test_errors_name_the_router_field():
    config = load_config(profile="demo").model_dump(mode="json")
    config["router"]["thresholds"] = [0.9, 0.1, 0.5]
    with pytest.raises(ValueError, match="router.thresholds"):
        parse_config(config)


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_load_with_a_router_block(profile):
    assert isinstance(load_config(profile=profile).router, RouterConfig)


def test_seed_set_is_reproducible_and_balanced(tmp_path):
    regenerated = tmp_path / "seed.jsonl"
    write(generate(), regenerated)
    assert regenerated.read_bytes() == DEFAULT_OUT.read_bytes(), "run python -m deployments.router.seed.build"
    rows = [json.loads(line) for line in DEFAULT_OUT.read_text().splitlines()]
    assert 400 <= len(rows) <= 1000
    by_size = Counter(r["size"] for r in rows)
    assert set(by_size) == {"0.8b", "2b", "4b", "9b"} and min(by_size.values()) >= 100
    heldout = {r["template"] for r in rows if r["split"] == "heldout"}
    trained = {r["template"] for r in rows if r["split"] == "train"}
    assert heldout and not heldout & trained, "held-out templates must never appear in training"
    assert sum(1 for r in rows if r.get("images")) >= 40
    assert len({json.dumps(r.get("prompt") or r["messages"]) + str(r.get("images")) for r in rows}) == len(
        rows
    )
    assert Path(DEFAULT_OUT).stat().st_size < 1_000_000
