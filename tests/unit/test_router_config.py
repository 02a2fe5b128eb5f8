"""RouterConfig validation, and the training set's composition and reproducibility."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from cluster.config import PROFILES, load_config, parse_config
from cluster.router_config import DEFAULT_THRESHOLDS, RouterConfig

TRAINING = Path(__file__).resolve().parents[2] / "training" / "router"

pytestmark = pytest.mark.unit


def test_defaults_keep_routing_off_and_describe_every_field():
    config = RouterConfig()
    assert (config.enabled, config.fallback_size, config.scorer) == (False, "0.8b", "learned")
    assert (config.policy, config.quality_tolerance, config.size_bias) == ("quality", 0.10, {})
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


def _training_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"router_training_{name}", TRAINING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generator():
    return _training_script("generate")


def test_near_duplicate_pairs_are_counted_once_and_split_by_template():
    import numpy as np

    near = _training_script("near_duplicates")
    # Rows 0 and 1 are one template's near-copies, row 2 another template's near-copy of row 0,
    # row 3 is unrelated; blocks of two rows make the count cross a block boundary.
    a = np.array([1.0, 0.0])
    b = np.array([0.96, 0.28])
    embeddings = np.stack([a, a, b / np.linalg.norm(b), np.array([0.0, 1.0])])
    counts = near.pair_counts(embeddings, ["t/1", "t/1", "t/2", "t/3"], thresholds=(0.9, 0.99), block=2)
    assert counts[0.9] == {"pairs": 3, "same_template": 1}
    assert counts[0.99] == {"pairs": 1, "same_template": 1}


def test_training_set_is_reproducible_varied_and_split_honestly():
    data = TRAINING / "data" / "prompts.jsonl"
    rows = _generator().generate()
    shipped = [json.loads(line) for line in data.read_text().splitlines()]
    assert rows == shipped, "run python training/router/generate.py"
    assert len(rows) >= 3000
    assert len({r["family"] for r in rows}) >= 20
    by_level = Counter(r["level"] for r in rows)
    assert set(by_level) == {0, 1, 2, 3} and min(by_level.values()) >= 300
    assert all(r["size"] == ("0.8b", "2b", "4b", "9b")[r["level"]] for r in rows)
    heldout_families = {r["family"] for r in rows if r["split"] == "heldout_family"}
    trained_families = {r["family"] for r in rows if r["split"] == "train"}
    assert heldout_families and not heldout_families & trained_families
    # The family-held-out split measures every rubric size (trivial included), and every task group
    # keeps a family in training.
    heldout_sizes = Counter(r["size"] for r in rows if r["split"] == "heldout_family")
    assert min(heldout_sizes[s] for s in ("0.8b", "2b", "4b", "9b")) >= 30
    assert {r["group"] for r in rows if r["split"] == "train"} == {r["group"] for r in rows}
    heldout_phrasings = {r["phrasing"] for r in rows if r["split"] == "heldout_phrasing"}
    assert heldout_phrasings and not heldout_phrasings & {r["phrasing"] for r in rows if r["split"] == "train"}
    assert sum(1 for r in rows if r.get("images")) >= 100
    assert len({r["lang"] for r in rows}) >= 6
    # Short but hard and long but easy are both present.
    assert sum(1 for r in rows if r["level"] == 3 and len(r["prompt"]) < 80) >= 50
    assert sum(1 for r in rows if r["level"] <= 1 and len(r["prompt"]) > 1000) >= 50
    assert len({r["prompt"] + r.get("image", "") for r in rows}) == len(rows)


def test_training_data_is_not_in_the_runtime_package():
    package = Path(__file__).resolve().parents[2] / "deployments" / "router"
    assert not (package / "data").exists() and not (package / "seed").exists()
    assert sorted(p.name for p in (package / "artifacts").iterdir()) == ["learned_router.json", "size_priors.json"]
