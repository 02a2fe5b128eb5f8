"""The integration tier's fuzz corpus (2,000+ bodies) on the vLLM engine: no 5xx, every 4xx an
OpenAI error, the engine alive afterwards (a request that kills vLLM's engine core shows here)."""

import pytest

pytest.importorskip("vllm", reason="vLLM is an optional engine: `make test-vllm` builds its venv")

from tests.integration.test_fuzz_api import test_fuzzed_bodies_never_earn_a_5xx  # noqa: E402, F401

pytestmark = pytest.mark.vllm
