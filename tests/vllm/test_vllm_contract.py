"""The 22 OpenAPI contract checks of tests/integration/test_openapi_contract.py on the vLLM engine."""

import pytest

pytest.importorskip("vllm", reason="vLLM is an optional engine: `make test-vllm` builds its venv")

from tests.integration.test_openapi_contract import (  # noqa: E402, F401 - run here on vLLM
    test_body_matches_openai_schema,
    test_errors_match_openai_schema,
    test_models_match_openai_schema,
)

pytestmark = pytest.mark.vllm
