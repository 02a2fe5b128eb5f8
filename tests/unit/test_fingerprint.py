"""`system_fingerprint`: a string that changes with the served weights or the engine settings."""

import re

import pytest

from cluster.config import load_config
from deployments.openai.fingerprint import system_fingerprint, system_fingerprints

pytestmark = pytest.mark.unit


def test_fingerprint_is_a_short_string_per_model(tmp_path):
    config = load_config(profile="demo")
    config.cache_dir = tmp_path
    prints = system_fingerprints(config)
    assert set(prints) == {m.public_name for m in config.enabled_models()}
    assert all(re.fullmatch(r"fp_[0-9a-f]{12}", value) for value in prints.values())
    assert len(set(prints.values())) == len(prints)  # each size has its own weights
    assert system_fingerprints(config) == prints  # stable: the same inputs give the same string


def test_fingerprint_changes_with_engine_settings_and_weights(tmp_path):
    model = load_config(profile="demo").models[0]
    before = system_fingerprint(model, tmp_path)
    assert (
        system_fingerprint(
            model.model_copy(update={"engine": model.engine.model_copy(update={"dtype": "bfloat16"})}),
            tmp_path,
        )
        != before
    )
    local = tmp_path / "ckpt"
    local.mkdir()
    (local / "config.json").write_text("{}")
    (local / "model.safetensors").write_bytes(b"x" * 10)
    real = model.model_copy(update={"random_weights": False, "checkpoint": str(local)})
    first = system_fingerprint(real, tmp_path)
    (local / "model.safetensors").write_bytes(b"x" * 11)
    assert system_fingerprint(real, tmp_path) != first
