"""`system_fingerprint`: which weights and engine settings answered, as one short string.

OpenAI's document types the field as a string that changes when the backend configuration changes,
so clients that pin `seed` can tell when answers may differ. Ours hashes the checkpoint's identity
with the model's engine settings, once per served model when the API starts (never per request).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cluster.config import ClusterConfig, ModelConfig

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def checkpoint_identity(model: ModelConfig, cache_dir: Path) -> dict[str, Any]:
    """What names the served weights: the demo generator's marker for random weights (the same on
    every machine), else the checkpoint id and, for a local folder, its config and weight files'
    names and sizes (re-saved weights change it; a hub id changes with its name only)."""
    if model.random_weights:
        from deployments.engines.demo_models import demo_marker

        return {"demo": demo_marker(model.size)}
    checkpoint = model.resolved_checkpoint(cache_dir)
    identity: dict[str, Any] = {"checkpoint": checkpoint, "variant": model.variant}
    folder = Path(checkpoint)
    if (folder / "config.json").is_file():
        identity["config_sha256"] = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
        identity["weights"] = sorted(
            (path.name, path.stat().st_size) for path in folder.iterdir() if path.suffix in WEIGHT_SUFFIXES
        )
    return identity


def system_fingerprint(model: ModelConfig, cache_dir: Path) -> str:
    """`fp_` and 12 hex digits of the checkpoint identity and the engine settings."""
    identity = {
        "weights": checkpoint_identity(model, cache_dir),
        "engine": model.engine.model_dump(mode="json"),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return "fp_" + digest[:12]


def system_fingerprints(config: ClusterConfig) -> dict[str, str]:
    """Each enabled model's fingerprint by public name."""
    return {
        model.public_name: system_fingerprint(model, config.cache_dir) for model in config.enabled_models()
    }
