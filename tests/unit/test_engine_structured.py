"""Structured outputs with xgrammar on the transformers engine (demo checkpoint, random weights)."""

import asyncio
import json
import os
import threading

import jsonschema
import pytest

from deployments.engines.base import (
    ChatMessage,
    EngineRequestError,
    GenerationRequest,
    SamplingParams,
    StructuredOutput,
)
from deployments.engines.structured import validate_structured
from tests.support.engines import collect, engine_runner

pytestmark = pytest.mark.unit

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "[A-Za-z ]{1,10}"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 3},
        "inner": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "tags", "inner"],
    "additionalProperties": False,
}


def request(text, structured=None, **sampling):
    sampling.setdefault("max_tokens", 200)
    return GenerationRequest(
        request_id=text,
        sampling=SamplingParams(structured=structured, **sampling),
        messages=[ChatMessage("user", [text])],
        enable_thinking=True,
    )


@pytest.fixture
def run_engine(demo_cache):
    """`run(body)` on the 0.8b demo checkpoint with a 1,024-token context."""
    return engine_runner(demo_cache, max_model_len=1024)


def test_constrained_and_free_rows_share_a_batch(run_engine):
    schema = StructuredOutput("json_schema", json.dumps(SCHEMA))

    async def body(engine):
        return await asyncio.gather(
            *(collect(engine, request(f"person {i}", schema, seed=i)) for i in range(6)),
            collect(engine, request("free text", max_tokens=20)),
            collect(engine, request("json", StructuredOutput("json_object"), seed=1)),
        )

    results = run_engine(body)
    for text, last in results[:6]:
        assert last.finish_reason == "stop"
        jsonschema.validate(json.loads(text), SCHEMA)
    assert results[6][1].finish_reason in ("stop", "length")
    text, last = results[7]
    assert text.startswith("{")
    # Unbounded JSON may run out of tokens on random weights ("length" says so); a stop must parse.
    assert last.finish_reason == "length" or isinstance(json.loads(text), dict)


def test_choice_regex_and_grammar(run_engine):
    async def body(engine):
        return await asyncio.gather(
            collect(
                engine, request("pick", StructuredOutput("choice", json.dumps(["red", "green", "blue"])))
            ),
            collect(engine, request("date", StructuredOutput("regex", r"\d{4}-\d{2}-\d{2}"))),
            collect(engine, request("yes or no", StructuredOutput("grammar", 'root ::= "yes" | "no"'))),
        )

    (choice, _), (date, _), (answer, _) = run_engine(body)
    assert choice in ("red", "green", "blue")
    assert len(date) == 10 and date[4] == "-" and date.replace("-", "").isdigit()
    assert answer in ("yes", "no")


def test_constrained_rows_are_generated_without_thinking(run_engine):
    async def body(engine):
        _, free = await collect(engine, request("q", max_tokens=2))
        _, constrained = await collect(engine, request("q", StructuredOutput("choice", '["a"]')))
        return free.prompt_tokens, constrained.prompt_tokens

    thinking_prompt, constrained_prompt = run_engine(body)
    assert constrained_prompt > thinking_prompt  # thinking off closes an empty <think></think> block


def test_bad_grammar_fails_before_output_and_engine_keeps_serving(run_engine):
    async def body(engine):
        with pytest.raises(EngineRequestError) as caught:
            await collect(engine, request("x", StructuredOutput("json_schema", '{"type": "nonsense"}')))
        text, last = await collect(engine, request("still serving", max_tokens=3))
        return caught.value, last

    error, last = run_engine(body)
    assert error.param == "response_format" and "nonsense" in error.message
    assert last.finish_reason is not None


def test_second_compile_is_cached(run_engine):
    spec = StructuredOutput("json_schema", json.dumps(SCHEMA))

    async def body(engine):
        first = engine._grammars.compile(spec)
        again = engine._grammars.compile(StructuredOutput("json_schema", json.dumps(SCHEMA)))
        return first is again

    assert run_engine(body)


def test_a_failing_grammar_row_fails_alone(run_engine):
    async def body(engine):
        original = engine._grammars.constraint

        def broken_constraint(spec):
            constraint = original(spec)

            def fill(bitmask, index):
                raise ValueError("bad mask")

            constraint.fill = fill
            return constraint

        engine._grammars.constraint = broken_constraint
        broken, fine = await asyncio.gather(
            collect(engine, request("broken", StructuredOutput("json_object"))),
            collect(engine, request("fine", max_tokens=4)),
            return_exceptions=True,
        )
        return broken, fine

    broken, fine = run_engine(body)
    assert isinstance(broken, EngineRequestError) and "bad mask" in broken.message
    assert fine[1].finish_reason is not None


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (StructuredOutput("json_schema", "not json"), "parse JSON"),
        (
            StructuredOutput("json_schema", '{"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}'),
            "ircular",
        ),
        (StructuredOutput("regex", "a(b"), "not closed"),
        (StructuredOutput("grammar", 'root ::= "a" |'), "EBNF"),
        (StructuredOutput("choice", "[]"), "non-empty"),
        (StructuredOutput("choice", '["a", 3]'), "non-empty"),
    ],
)
def test_validate_structured_names_the_problem(spec, fragment):
    with pytest.raises(EngineRequestError) as caught:
        validate_structured(spec)
    assert fragment in caught.value.message
    assert caught.value.param in ("response_format", "structured_outputs")
    assert "/project/cpp" not in caught.value.message


def test_validate_structured_accepts_good_specs():
    validate_structured(StructuredOutput("json_schema", json.dumps(SCHEMA)))
    validate_structured(StructuredOutput("json_object"))
    validate_structured(StructuredOutput("choice", '["a", "b"]'))


def _byte_token(tokenizer, value: int) -> int:
    """The id of the byte-level token that spells the single byte `value` (GPT-2's byte alphabet:
    printable Latin-1 bytes stand for themselves, the rest for 256, 257, ... in byte order)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    unprintable = [b for b in range(256) if b not in printable]
    char = chr(value) if value in printable else chr(256 + unprintable.index(value))
    token = tokenizer.convert_tokens_to_ids(char)
    assert token != tokenizer.unk_token_id and token is not None
    return token


@pytest.mark.parametrize(
    "spec",
    [
        StructuredOutput("json_schema", '{"type": "string"}'),
        StructuredOutput("json_schema", '{"type": "string", "maxLength": 12}'),
        StructuredOutput("json_schema", '{"type": "object", "properties": {"a": {"type": "string"}}}'),
        StructuredOutput("json_object"),
    ],
    ids=["string", "bounded-string", "object", "json-object"],
)
def test_json_strings_admit_only_json_and_utf8_characters(demo_cache, spec):
    """A byte-level tokenizer can spell an encoded UTF-16 surrogate (ED A0..BF xx) or a raw control
    byte; inside a JSON string neither may be allowed, or the client receives U+FFFD / invalid JSON."""
    from transformers import AutoTokenizer

    from deployments.engines.structured import GrammarCache

    tokenizer = AutoTokenizer.from_pretrained(demo_cache / "demo-models" / "qwen3.5-0.8b")
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    cache = GrammarCache(tokenizer, len(tokenizer), [stop])
    opening = '{"a":"' if spec.kind == "json_object" or "object" in (spec.spec or "") else '"'

    def inside_string():
        constraint = cache.constraint(spec)
        for token in tokenizer.encode(opening, add_special_tokens=False):
            assert constraint.accept(token)
        return constraint

    constraint = inside_string()
    assert constraint.accept(_byte_token(tokenizer, 0xED))  # U+D000..U+D7FF start this way too
    assert not constraint.accept(_byte_token(tokenizer, 0xA0))  # ED A0: a high surrogate
    constraint = inside_string()
    assert not constraint.accept(_byte_token(tokenizer, 0x1F))
    constraint = inside_string()
    for text in ("é", "中", "😀", "\ud7ff", "\ue000"):
        for token in tokenizer.encode(text, add_special_tokens=False):
            assert constraint.accept(token), text


def test_slow_grammar_compiles_hold_only_structured_requests(run_engine):
    # Compiles that take seconds (xgrammar on a very large enum) run on the engine's grammar thread.
    # As many of them as asyncio's default worker pool has threads would, on that pool, leave no
    # thread to tokenize anything else; here a plain request submitted meanwhile is answered, and
    # the structured ones are answered once their grammars are ready.
    workers = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor size
    release = threading.Event()
    compiling = threading.Event()

    async def body(engine):
        compile_constraint = engine._grammars.constraint

        def slow_constraint(spec):
            compiling.set()
            release.wait(60)
            return compile_constraint(spec)

        engine._grammars.constraint = slow_constraint
        choice = StructuredOutput("choice", json.dumps(["red", "blue"]))
        structured = [
            asyncio.create_task(collect(engine, request(f"pick {i}", choice))) for i in range(workers)
        ]
        await asyncio.to_thread(compiling.wait, 30)
        try:
            _, plain = await asyncio.wait_for(collect(engine, request("plain", max_tokens=4)), 30)
            pending_meanwhile = sum(not task.done() for task in structured)
        finally:
            release.set()
        answers = [text for text, _ in await asyncio.wait_for(asyncio.gather(*structured), 60)]
        return plain, pending_meanwhile, answers

    plain, pending_meanwhile, answers = run_engine(body)
    assert plain.finish_reason is not None
    assert pending_meanwhile == workers
    assert set(answers) <= {"red", "blue"} and len(answers) == workers


def test_a_compile_past_its_deadline_is_a_request_error_and_the_grammar_still_lands(run_engine):
    release = threading.Event()
    slow_spec = StructuredOutput("choice", json.dumps(["slow", "grammar"]))

    async def body(engine):
        compile_constraint = engine._grammars.constraint

        def slow_constraint(spec):
            if spec == slow_spec:
                release.wait(30)
            return compile_constraint(spec)

        engine._grammars.constraint = slow_constraint
        with pytest.raises(EngineRequestError) as caught:
            await collect(engine, request("pick", slow_spec))
        release.set()  # the compile finishes on its thread and is cached
        text, _ = await asyncio.wait_for(collect(engine, request("pick again", slow_spec)), 30)
        return caught.value, text

    error, text = run_engine(body, grammar_compile_timeout_s=0.3)
    assert error.param == "structured_outputs"
    assert "did not compile into a grammar within 0.3 s" in error.message
    assert text in ("slow", "grammar")
