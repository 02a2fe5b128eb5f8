"""Structured outputs and forced tool calls through the OpenAI service, on a demo checkpoint.

    python bench/structured_bench.py [--size 0.8b] [--requests 200] [--tool-requests 100] [--rounds 3]

Runs in process: one `TransformersEngine` on the demo checkpoint behind a `ModelServer`, the real
`OpenAIService` (parsing, validation, routing record, response framing) over ASGI, no Ray. Prints:

1. strict JSON-schema answers (10 fields, nesting 2) that parse and validate, of `--requests`;
2. forced tool calls (`tool_choice` named and `required`) whose arguments validate, of `--tool-requests`;
3. tokens/s at batch 16, free text vs the same schema, interleaved rounds, and their ratio;
4. schema compile cost, first vs repeated: the ingress check and the engine's grammar compile.

The demo weights are random: every valid answer is the constraint's doing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

SCHEMA = {
    "type": "object",
    "properties": {
        "invoice_id": {"type": "string", "pattern": "^INV-[0-9]{4}$"},
        "customer": {"type": "string", "maxLength": 12},
        "total": {"type": "number", "minimum": 0},
        "currency": {"enum": ["EUR", "USD", "GBP"]},
        "paid": {"type": "boolean"},
        "items": {"type": "integer", "minimum": 0, "maximum": 99},
        "due_days": {"type": "integer", "minimum": 0, "maximum": 90},
        "notes": {"type": ["string", "null"], "maxLength": 16},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 10},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                "country": {"enum": ["DE", "FR", "US", "GB"]},
            },
            "required": ["city", "zip", "country"],
            "additionalProperties": False,
        },
        "priority": {"enum": ["low", "normal", "high"]},
    },
    "required": [
        "invoice_id",
        "customer",
        "total",
        "currency",
        "paid",
        "items",
        "due_days",
        "notes",
        "address",
        "priority",
    ],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 10},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7},
                    "unit": {"enum": ["c", "f"]},
                },
                "required": ["city", "days", "unit"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "maxLength": 20}, "limit": {"type": "integer"}},
                "required": ["query"],
                "additionalProperties": False,
            },
        },
    },
]


def _config(size: str, cache: Path):
    from cluster.config import parse_config

    config = parse_config(
        {
            "models": [
                {
                    "size": size,
                    "random_weights": True,
                    "engine": {"device": "cpu", "dtype": "float32", "max_model_len": 2048},
                    # room for batch 16 (plus `n`) in flight without the ingress's 429
                    "deployment": {"num_replicas": 1, "max_ongoing_requests": 64},
                }
            ],
            "router": {"enabled": False},
            "serving": {
                "default_model": f"qwen3.5-{size}",
                "limits": {"max_n": 16},
                "ingress": {"request_timeout_s": 1800},  # a shared, busy CPU must not turn into 504s
            },
        }
    )
    config.cache_dir = cache
    return config


def _schema_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "invoice", "schema": schema, "strict": True}}


async def _gather_bounded(coros, limit: int):
    semaphore = asyncio.Semaphore(limit)

    async def run(coro):
        async with semaphore:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros))


async def _valid_json_share(http, model: str, count: int) -> tuple[int, dict[str, int]]:
    import jsonschema

    async def one(i: int):
        response = await http.post(
            "/v1/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "user", "content": f"Extract invoice {i}."}],
                "response_format": _schema_format(SCHEMA),
                "max_tokens": 400,
            },
        )
        if response.status_code != 200:
            return False, f"http {response.status_code}: {response.json()['error']['message'][:80]}"
        choice = response.json()["choices"][0]
        try:
            jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)
            return True, choice["finish_reason"]
        except (ValueError, jsonschema.ValidationError) as error:
            print(f"  invalid: {str(error).splitlines()[0][:160]}")
            return False, choice["finish_reason"]

    results = await _gather_bounded([one(i) for i in range(count)], 16)
    reasons: dict[str, int] = {}
    for _, reason in results:
        reasons[reason] = reasons.get(reason, 0) + 1
    return sum(ok for ok, _ in results), reasons


async def _valid_tool_share(http, model: str, count: int) -> dict[str, int]:
    """Outcomes of forced calls: `valid`, `length` (cut off by max_tokens: the one allowed
    exception, possible when parallel calls keep the array growing), `invalid` or an HTTP error."""
    import jsonschema

    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}

    async def one(i: int) -> str:
        choice = {"type": "function", "function": {"name": "get_weather"}} if i % 2 == 0 else "required"
        response = await http.post(
            "/v1/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "user", "content": f"Question {i}"}],
                "tools": TOOLS,
                "tool_choice": choice,
                "parallel_tool_calls": i % 4 != 1,  # half the `required` ones allow several calls
                "max_tokens": 400,
            },
        )
        if response.status_code != 200:
            return f"http {response.status_code}"
        answer = response.json()["choices"][0]
        if answer["finish_reason"] == "length":
            return "length"
        calls = answer["message"].get("tool_calls") or []
        try:
            assert answer["finish_reason"] == "tool_calls" and calls
            for call in calls:
                name = call["function"]["name"]
                assert isinstance(choice, str) or name == "get_weather"
                jsonschema.validate(json.loads(call["function"]["arguments"]), schemas[name])
            return "valid"
        except (AssertionError, KeyError, ValueError, jsonschema.ValidationError) as error:
            print(f"  invalid call: {str(error).splitlines()[0][:160] if str(error) else repr(error)}")
            return "invalid"

    outcomes: dict[str, int] = {}
    for outcome in await _gather_bounded([one(i) for i in range(count)], 16):
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


async def _tokens_per_s(http, model: str, constrained: bool, batch: int = 16) -> float:
    extra = {"response_format": _schema_format(SCHEMA)} if constrained else {}

    async def one(i: int):
        response = await http.post(
            "/v1/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "user", "content": f"Write invoice {i}."}],
                "max_tokens": 64,
                **extra,
            },
        )
        return response.json()["usage"]["completion_tokens"]

    started = time.perf_counter()
    tokens = await asyncio.gather(*(one(i) for i in range(batch)))
    return sum(tokens) / (time.perf_counter() - started)


def _compile_costs(service, engine) -> dict[str, float]:
    """Milliseconds for a new schema, then the same schema again: ingress check and engine compile."""
    from deployments.engines.base import StructuredOutput

    schema = dict(SCHEMA, title=uuid.uuid4().hex)  # never seen before
    spec = StructuredOutput("json_schema", json.dumps(schema, sort_keys=True, separators=(",", ":")))
    costs = {}
    for label, call in (
        ("ingress check", lambda: service.spec_validator.check(spec, "response_format")),
        # the engine's grammar cache is private; a benchmark may look inside
        ("engine compile", lambda: engine._grammars.compile(spec)),
    ):
        for attempt in ("first", "repeat"):
            started = time.perf_counter()
            call()
            costs[f"{label} ({attempt})"] = (time.perf_counter() - started) * 1000
    return costs


async def _main(args) -> None:
    import httpx
    from starlette.requests import Request

    from deployments.engines.demo_models import ensure_demo_models
    from deployments.model_server import ModelServer
    from deployments.openai.dispatch import LocalModelClient
    from deployments.openai.service import OpenAIService
    from deployments.router import build_router

    cache = Path(args.cache or tempfile.mkdtemp(prefix="structured-bench-"))
    ensure_demo_models(cache, [args.size])
    config = _config(args.size, cache)
    model = config.enabled_models()[0]
    server = ModelServer(model, cache)
    await server.start()
    router = build_router(config.router, [model.size])
    service = OpenAIService(config, {model.size: LocalModelClient(server)}, router)

    async def app(scope, receive, send):
        response = await service.handle(Request(scope, receive))
        await response(scope, receive, send)

    name = model.public_name
    print(f"in-process OpenAIService + TransformersEngine on demo {name} (random weights), no Ray")
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as http:
            started = time.perf_counter()
            valid, reasons = await _valid_json_share(http, name, args.requests)
            print(
                f"strict schema (10 fields, nesting 2): {valid}/{args.requests} parse and validate "
                f"({100 * valid / args.requests:.1f}%), finish reasons {reasons}, "
                f"{time.perf_counter() - started:.1f}s"
            )
            started = time.perf_counter()
            outcomes = await _valid_tool_share(http, name, args.tool_requests)
            valid_tools = outcomes.get("valid", 0)
            print(
                f"forced tool calls (named and required): {valid_tools}/{args.tool_requests} valid "
                f"({100 * valid_tools / args.tool_requests:.1f}%), outcomes {outcomes}, "
                f"{time.perf_counter() - started:.1f}s"
            )
            await _tokens_per_s(http, name, False)  # warm-up
            free, constrained = [], []
            for _ in range(args.rounds):  # interleaved so machine noise hits both alike
                free.append(await _tokens_per_s(http, name, False))
                constrained.append(await _tokens_per_s(http, name, True))
            f, c = statistics.median(free), statistics.median(constrained)
            print(
                f"batch 16 tokens/s (median of {args.rounds}): free {f:.0f}, constrained {c:.0f}, "
                f"constrained/free {c / f:.3f} (cost {100 * (1 - c / f):.1f}%)"
            )
        costs = _compile_costs(service, server.engine)
        print("schema compile: " + ", ".join(f"{k} {v:.3f} ms" for k, v in costs.items()))
    finally:
        await service.close()
        await server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="0.8b", help="demo size to serve")
    parser.add_argument("--requests", type=int, default=200, help="strict-schema requests")
    parser.add_argument("--tool-requests", type=int, default=100, help="forced tool-call requests")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved free/constrained rounds")
    parser.add_argument("--cache", default=None, help="demo checkpoint cache (default: a temp dir)")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
