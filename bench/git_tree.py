"""The repository at a git ref, as plain files: what the benches compare the working tree against."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def export_tree(ref: str, into: Path) -> Path:
    """Extract the repository at `ref` into the folder `into` (no git metadata) and return it."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into
