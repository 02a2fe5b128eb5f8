"""Continuous batching in the transformers engine on the real demo checkpoint (tiny Qwen3.5, CPU)."""

import asyncio
import io

import pytest
from PIL import Image

from deployments.engines.base import ChatMessage, GenerationRequest, ImageInput, SamplingParams
from deployments.engines.decode_loop import DecodeLoop, EngineLoopError
from tests.support.engines import collect, engine_runner

pytestmark = pytest.mark.unit


def png(size=(64, 48), color=(200, 10, 10)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def request(text, *, images=(), **sampling):
    sampling.setdefault("max_tokens", 6)
    return GenerationRequest(
        request_id=text,
        sampling=SamplingParams(**sampling),
        messages=[ChatMessage("user", [text, *[ImageInput(i) for i in images]])],
    )


@pytest.fixture
def run_engine(demo_cache):
    """`run(body, **engine_config)` on the 0.8b demo checkpoint (context 1,024 unless given)."""
    return engine_runner(demo_cache, max_model_len=1024)


async def first_delta_then_rest(engine, req, started: asyncio.Event):
    deltas = []
    async for delta in engine.chat(req):
        deltas.append(delta)
        started.set()
    return "".join(d.text for d in deltas), deltas[-1]


def test_greedy_row_does_not_depend_on_neighbours_across_joins_and_leaves(run_engine):
    target = dict(temperature=0.0, max_tokens=40, logit_bias={})

    async def body(engine):
        eos = {i: -100.0 for i in engine._eos_ids}
        target["logit_bias"] = eos
        alone = await collect(engine, request("the row under test", **target))
        image_alone = await collect(engine, request("look", images=[png()], temperature=0.0, max_tokens=12))
        started = asyncio.Event()
        under_test = asyncio.create_task(
            first_delta_then_rest(engine, request("the row under test", **target), started)
        )
        early = asyncio.create_task(collect(engine, request("leaves early", temperature=0.0, max_tokens=2)))
        await started.wait()
        # Joins mid-run: a longer prompt (re-pads the cache), an image row, a sampled row.
        joined = await asyncio.gather(
            collect(
                engine,
                request(
                    "a much longer prompt that forces the running rows to re-pad " * 3,
                    temperature=0.0,
                    max_tokens=5,
                ),
            ),
            collect(engine, request("look", images=[png()], temperature=0.0, max_tokens=12)),
            collect(engine, request("sampled neighbour", temperature=1.0, max_tokens=8)),
        )
        await early
        return alone, await under_test, image_alone, joined[1]

    alone, batched, image_alone, image_batched = run_engine(body)
    assert alone[1].completion_tokens == 40
    assert batched[0] == alone[0]
    assert batched[1].tokens == alone[1].tokens
    assert batched[1].logprobs == pytest.approx(alone[1].logprobs, abs=1e-4)
    assert image_batched[0] == image_alone[0]
    assert image_batched[1].prompt_tokens == image_alone[1].prompt_tokens


def test_seeded_row_is_reproducible_in_a_batch(run_engine):
    async def body(engine):
        alone = await collect(engine, request("seeded", seed=7, temperature=1.0, max_tokens=10))
        together = await asyncio.gather(
            collect(engine, request("other", temperature=1.0, max_tokens=10)),
            collect(engine, request("seeded", seed=7, temperature=1.0, max_tokens=10)),
        )
        return alone, together[1]

    alone, batched = run_engine(body)
    assert batched[1].tokens == alone[1].tokens


def test_burst_of_32_is_admitted_together(run_engine):
    async def body(engine):
        # A first request compiles the chat template, which would otherwise land inside the burst's
        # 50 ms window (once split this burst in two on a loaded machine).
        await collect(engine, request("warm-up", max_tokens=1))
        results = await asyncio.gather(
            *(collect(engine, request(f"burst {i}", max_tokens=3)) for i in range(32))
        )
        return results, list(engine._loop_runner.admissions)

    results, admissions = run_engine(body, max_batch_size=32)
    assert len(results) == 32 and all(last.finish_reason for _, last in results)
    assert admissions == [1, 32]


def test_short_request_does_not_wait_for_a_long_one(run_engine):
    async def body(engine):
        started = asyncio.Event()
        long = asyncio.create_task(
            first_delta_then_rest(
                engine,
                request("long", max_tokens=300, logit_bias={i: -100.0 for i in engine._eos_ids}),
                started,
            )
        )
        await started.wait()
        text, last = await collect(engine, request("short", max_tokens=3))
        long_done = long.done()
        await long
        return last, long_done

    last, long_done = run_engine(body)
    assert last.finish_reason is not None
    assert not long_done  # the short row finished while the long one was still decoding


def test_cancelled_rows_leave_the_batch(run_engine):
    async def body(engine):
        stream = engine.chat(
            request("to cancel", max_tokens=500, logit_bias={i: -100.0 for i in engine._eos_ids})
        )
        await stream.__anext__()
        await stream.aclose()
        await collect(engine, request("next", max_tokens=3))
        # "next" ran at least one step after the cancel, so the cancelled row must be gone (the
        # finished "next" row itself may still be leaving on the worker thread).
        return [row.request.request_id for row in engine._loop_runner._rows]

    assert "to cancel" not in run_engine(body)


def test_long_prompt_is_prefilled_in_chunks(run_engine, monkeypatch):
    import deployments.engines.decode_loop as decode_loop

    monkeypatch.setattr(decode_loop, "PREFILL_CHUNK_TOKENS", 16)

    async def body(engine):
        prompt = "a long prompt that spans several prefill chunks " * 4
        chunked = await collect(engine, request(prompt, temperature=0.0, max_tokens=6))
        monkeypatch.setattr(decode_loop, "PREFILL_CHUNK_TOKENS", 100_000)
        whole = await collect(engine, request(prompt, temperature=0.0, max_tokens=6))
        return chunked, whole

    chunked, whole = run_engine(body)
    assert chunked[1].prompt_tokens > 32
    assert chunked[0] == whole[0]


def test_streamed_logprobs_carry_top_alternatives(run_engine):
    async def body(engine):
        return [
            d async for d in engine.chat(request("logprobs", max_tokens=6, logprobs=True, top_logprobs=5))
        ]

    deltas = run_engine(body)
    entries = [entry for d in deltas for entry in (d.token_logprobs or [])]
    assert len(entries) == deltas[-1].completion_tokens
    for entry in entries:
        assert len(entry.top) == 5
        values = [lp for _, lp in entry.top]
        assert values == sorted(values, reverse=True)
        assert entry.logprob <= values[0] + 1e-6
    assert [e.logprob for e in entries] == pytest.approx(deltas[-1].logprobs, abs=1e-6)


def test_logit_bias_forces_a_token(run_engine):
    async def body(engine):
        token = engine._builder.tokenizer.convert_tokens_to_ids("a")
        text, last = await collect(
            engine, request("bias", max_tokens=5, temperature=1.0, logit_bias={token: 100.0})
        )
        return text

    assert run_engine(body) == "aaaaa"


def test_engine_loop_crash_fails_open_rows_and_health(run_engine):
    async def body(engine):
        def broken(*args, **kwargs):
            raise RuntimeError("device lost")

        engine._model.forward = broken
        with pytest.raises(EngineLoopError, match="device lost"):
            await collect(engine, request("doomed"))
        with pytest.raises(RuntimeError, match="decode loop crashed"):
            await engine.check_health()
        with pytest.raises(RuntimeError):
            await collect(engine, request("after the crash"))
        return True

    assert run_engine(body)


def test_a_crashed_loop_maps_to_503():
    from deployments.engines.decode_loop import EngineLoopError
    from deployments.openai.errors import to_openai_error

    error = to_openai_error(EngineLoopError("the engine loop crashed: device lost"), retry_after_s=3)
    assert error.status_code == 503 and error.headers["Retry-After"] == "3"


def test_cancel_mid_prefill_stops_the_prefill(run_engine, monkeypatch):
    import threading

    import deployments.engines.decode_loop as decode_loop

    monkeypatch.setattr(decode_loop, "PREFILL_CHUNK_TOKENS", 16)
    in_prefill, resume = threading.Event(), threading.Event()
    chunks: list[int] = []

    async def body(engine):
        forward = engine._model.forward

        def counting_forward(*args, **kwargs):
            width = kwargs["input_ids"].shape[1]
            if width > 1:
                chunks.append(width)
                if len(chunks) == 2:  # the long prompt is mid-prefill: let the test cancel it
                    in_prefill.set()
                    resume.wait(timeout=30)
            return forward(*args, **kwargs)

        engine._model.forward = counting_forward
        consumer = asyncio.create_task(collect(engine, request("a very long prompt to prefill " * 12)))
        await asyncio.get_running_loop().run_in_executor(None, in_prefill.wait, 30)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        resume.set()
        before = len(chunks)
        await collect(engine, request("next", max_tokens=2))
        return before, len(chunks), engine._loop_runner._prefills

    before, after, prefills = run_engine(body)
    # Only the third chunk (already running when the cancel landed) and the next request's prefill.
    assert after - before <= 2
    assert not prefills


def test_image_rows_prefilled_together_match_each_row_alone(run_engine):
    """Image rows of different sizes admitted at once share one padded prefill forward; each row's
    greedy tokens, logprobs and prompt length must equal the same row run alone."""
    eos_free = {"temperature": 0.0, "max_tokens": 10}
    rows = [
        ("a small red picture", [png((64, 48))]),
        ("a larger blue one, with a longer question about what is in it", [png((160, 120), (10, 10, 200))]),
        ("two pictures", [png((48, 64), (10, 200, 10)), png((96, 96))]),
        ("plain text between them", []),
    ]

    async def body(engine):
        alone = [await collect(engine, request(text, images=images, **eos_free)) for text, images in rows]
        before = len(engine._loop_runner.admissions)
        together = await asyncio.gather(
            *(collect(engine, request(text, images=images, **eos_free)) for text, images in rows)
        )
        return alone, together, list(engine._loop_runner.admissions)[before:]

    alone, together, admissions = run_engine(body)
    assert admissions == [len(rows)]
    for (text_alone, last_alone), (text_together, last_together) in zip(alone, together, strict=True):
        assert text_together == text_alone
        assert last_together.prompt_tokens == last_alone.prompt_tokens
        assert last_together.tokens == last_alone.tokens
        assert last_together.logprobs == pytest.approx(last_alone.logprobs, abs=1e-4)


def test_vision_batches_respect_the_token_budget():
    from types import SimpleNamespace

    from deployments.engines.decode_loop import vision_batches

    def row(tokens):
        return SimpleNamespace(prompt=SimpleNamespace(num_tokens=tokens))

    rows = [row(n) for n in (200, 220, 210, 900, 250, 3000, 100)]
    groups = vision_batches(rows, budget=1000)
    assert [[r.prompt.num_tokens for r in g] for g in groups] == [
        [200, 220, 210],
        [900],
        [250],
        [3000],
        [100],
    ]
    assert all(len(g) * max(r.prompt.num_tokens for r in g) <= 1000 or len(g) == 1 for g in groups)
    assert [r for g in groups for r in g] == rows  # order kept, nothing lost


def test_forwards_run_with_subnormal_floats_flushed_to_zero(run_engine):
    # Decaying linear-attention states reach subnormal floats, which x86 computes 5-50x slower
    # (bench/engine_denormals.py): every forward must see them flushed to zero.
    import torch

    seen = []

    def probe(module, args, output):
        tiny = torch.tensor(1e-39, dtype=torch.float32)  # subnormal in float32
        seen.append(float(tiny * 1.0))

    async def body(engine):
        handle = engine._model.register_forward_hook(probe)
        try:
            await collect(engine, request("hello there", temperature=0.0, max_tokens=3))
        finally:
            handle.remove()

    run_engine(body)
    assert seen and all(value == 0.0 for value in seen)
    assert float(torch.tensor(1e-39, dtype=torch.float32) * 1.0) != 0.0  # this thread is untouched


def policy_loop(
    running: int, waiting: int, *, steps: int = 2, max_batch_size: int = 32, prefilling: bool = False
):
    """A decode loop with `running` rows decoding and `waiting` in its inbox (no model: only the
    admission policy is exercised)."""
    loop = DecodeLoop(
        model=None, device="cpu", pad_id=0, image_token_id=0, vocab_size=8, output=None, grammars=None,
        max_batch_size=max_batch_size, batch_wait_s=0.0, loop=None, prefill_defer_steps=steps,
    )  # fmt: skip
    loop._rows = [object()] * running
    loop._inbox.extend([object()] * waiting)
    if prefilling:
        loop._prefills.append(object())
    return loop


def test_arrivals_wait_at_most_the_configured_steps_while_the_batch_is_half_full():
    loop = policy_loop(running=16, waiting=3)
    assert [loop._defer_admission() for _ in range(4)] == [True, True, False, True]


@pytest.mark.parametrize(
    ("running", "waiting", "steps", "prefilling"),
    [
        (15, 3, 2, False),  # under half full: a small batch gains nothing from waiting
        (16, 8, 2, False),  # a quarter of the batch waits: prefill it now
        (16, 0, 2, False),  # nothing waits
        (16, 3, 0, False),  # switched off
        (16, 3, 2, True),  # a prefill runs anyway this step
    ],
)
def test_arrivals_are_admitted_at_once_otherwise(running, waiting, steps, prefilling):
    assert not policy_loop(running, waiting, steps=steps, prefilling=prefilling)._defer_admission()


def test_a_deferred_arrival_waits_its_steps_and_answers_as_alone(run_engine):
    target = dict(temperature=0.0, max_tokens=8)

    async def body(engine):
        alone = await collect(engine, request("the row under test", **target))
        keep_going = {i: -100.0 for i in engine._eos_ids}
        started = asyncio.Event()
        # Four long rows fill half of a batch of 8, so one arrival (under a quarter) may wait 3 steps.
        long_rows = [
            asyncio.create_task(
                first_delta_then_rest(
                    engine, request(f"long {i}", max_tokens=200, logit_bias=keep_going), started
                )
            )
            for i in range(4)
        ]
        await started.wait()
        await asyncio.sleep(0.05)
        under_test = await collect(engine, request("the row under test", **target))
        await asyncio.gather(*long_rows)
        return alone, under_test, engine._loop_runner.deferred_steps

    alone, under_test, deferred_steps = run_engine(body, max_batch_size=8, prefill_defer_steps=3)
    assert under_test[0] == alone[0] and under_test[1].finish_reason == alone[1].finish_reason
    assert deferred_steps == 3  # it waited the full three steps (nothing else arrived), then joined
