"""The transformers engine on the real demo checkpoints (tiny Qwen3.5, CPU)."""

import asyncio
import io

import pytest
from PIL import Image

from deployments.engines.base import (
    ChatMessage,
    GenerationRequest,
    ImageInput,
    InvalidImageError,
    PromptTooLongError,
    SamplingParams,
)
from deployments.engines.packed_linear import PackedLinear, packing_available
from tests.support.engines import collect, engine_runner

pytestmark = pytest.mark.unit


def png(size=(64, 48), color=(200, 10, 10)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def request(text="hello", *, images=(), thinking=None, **sampling):
    sampling.setdefault("max_tokens", 6)
    return GenerationRequest(
        request_id=text,
        sampling=SamplingParams(**sampling),
        messages=[ChatMessage("user", [text, *[ImageInput(i) for i in images]])],
        enable_thinking=thinking,
    )


@pytest.fixture
def run_engine(demo_cache):
    """Runs a coroutine against a started engine on the 0.8b demo checkpoint, then shuts it down."""
    return engine_runner(demo_cache, max_model_len=512)


def test_batched_greedy_matches_single(run_engine):
    async def body(engine):
        alone = await collect(engine, request("the same prompt", temperature=0.0, max_tokens=8))
        together = await asyncio.gather(
            collect(engine, request("the same prompt", temperature=0.0, max_tokens=8)),
            collect(engine, request("a much longer and different prompt for padding", temperature=0.0)),
            collect(engine, request("with a picture", images=[png()], temperature=0.0)),
        )
        return alone, together

    alone, together = run_engine(body)
    assert together[0][0] == alone[0]
    assert together[0][1].completion_tokens == alone[1].completion_tokens


def test_bfloat16_on_the_cpu_packs_the_linear_layers_and_answers_the_same(run_engine):
    async def body(engine):
        answers = await asyncio.gather(
            collect(engine, request("pack the weights", temperature=0.0, max_tokens=8)),
            collect(engine, request("and the vision tower's", images=[png()], temperature=0.0)),
        )
        packed = sum(isinstance(module, PackedLinear) for module in engine._model.modules())
        return [(text, last.completion_tokens) for text, last in answers], packed

    packed_answers, packed = run_engine(body, dtype="bfloat16")
    plain_answers, none = run_engine(body, dtype="bfloat16", pack_cpu_weights=False)
    assert packed_answers == plain_answers
    assert none == 0
    assert (packed > 0) == packing_available()


def test_usage_finish_reason_and_logprobs(run_engine):
    async def body(engine):
        return await collect(engine, request("count", max_tokens=5, temperature=0.0))

    text, last = run_engine(body)
    assert last.finish_reason in ("length", "stop")
    assert last.prompt_tokens > 3
    assert 1 <= last.completion_tokens <= 5
    assert len(last.logprobs) == last.completion_tokens == len(last.tokens)
    assert all(lp <= 0 for lp in last.logprobs)


def test_a_caller_that_reads_no_answer_logprobs_gets_none_and_the_same_answer(run_engine):
    def ask(**fields):
        base = request("count", max_tokens=5, temperature=0.0)
        fields.setdefault("sampling", base.sampling)
        return GenerationRequest(base.request_id, messages=base.messages, **fields)

    async def body(engine):
        alone = await collect(engine, ask(answer_logprobs=False))  # a batch that computes none
        return alone, *await asyncio.gather(
            collect(engine, ask()),
            collect(engine, ask(answer_logprobs=False)),
            collect(
                engine,
                ask(
                    answer_logprobs=False,
                    sampling=SamplingParams(max_tokens=5, temperature=0.0, logprobs=True),
                ),
            ),
        )

    alone, (text, read), (same_text, skipped), (_, asked) = run_engine(body)
    assert same_text == text == alone[0] and skipped.tokens == read.tokens
    assert len(read.logprobs) == read.completion_tokens and skipped.logprobs == alone[1].logprobs == []
    # A client's `logprobs` is read too, whatever the flag says.
    assert asked.logprobs == read.logprobs


def test_seed_makes_sampling_reproducible(run_engine):
    async def body(engine):
        a = await collect(engine, request("seeded", seed=123, temperature=1.0, max_tokens=10))
        b = await collect(engine, request("seeded", seed=123, temperature=1.0, max_tokens=10))
        return a[0], b[0]

    first, second = run_engine(body)
    assert first == second


def test_stop_string_ends_generation(run_engine):
    async def body(engine):
        free, _ = await collect(engine, request("stop test", temperature=0.0, max_tokens=12))
        assert len(free) >= 3
        stop = free[1:3]
        cut, last = await collect(engine, request("stop test", temperature=0.0, max_tokens=12, stop=[stop]))
        return free, stop, cut, last

    free, stop, cut, last = run_engine(body)
    assert stop not in cut
    assert free.startswith(cut)
    assert last.finish_reason == "stop"


def test_image_changes_prompt_tokens(run_engine):
    async def body(engine):
        _, plain = await collect(engine, request("describe"))
        _, small = await collect(engine, request("describe", images=[png((32, 32))]))
        _, large = await collect(engine, request("describe", images=[png((256, 256))]))
        return plain.prompt_tokens, small.prompt_tokens, large.prompt_tokens

    plain, small, large = run_engine(body)
    assert plain < small < large


def test_bad_requests_raise_before_output(run_engine):
    async def body(engine):
        with pytest.raises(PromptTooLongError, match="maximum context length is 512"):
            await collect(engine, request("word " * 600))
        with pytest.raises(InvalidImageError, match="not a recognised image format"):
            await collect(engine, request("x", images=[b"not an image"]))
        # The image processor's own ValueError (aspect ratio over 200) becomes a request error.
        with pytest.raises(InvalidImageError, match="1000x4 pixels.*at most 200 times"):
            await collect(engine, request("x", images=[png((1000, 4))]))
        with pytest.raises(InvalidImageError, match="at most 1"):
            await collect(engine, request("x", images=[png(), png()]))
        # The engine still serves after bad requests.
        return await collect(engine, request("still alive"))

    text, last = run_engine(body, max_images_per_prompt=1)
    assert last.finish_reason is not None


def test_closing_the_stream_cancels_the_row(run_engine):
    async def body(engine):
        stream = engine.chat(request("long", max_tokens=400, temperature=1.0))
        first = await stream.__anext__()
        await stream.aclose()
        # A cancelled row must not hold the batch: the next request completes promptly.
        return first, await asyncio.wait_for(collect(engine, request("next")), timeout=30)

    first, (text, last) = run_engine(body, max_model_len=1024)
    assert last.finish_reason is not None


def test_thinking_prompt_follows_the_flag(run_engine):
    async def body(engine):
        _, off = await collect(engine, request("q", thinking=False))
        _, on = await collect(engine, request("q", thinking=True))
        return off.prompt_tokens, on.prompt_tokens

    off, on = run_engine(body)
    assert off > on  # thinking off closes an empty <think></think> block in the prompt


def test_an_engine_loaded_outside_the_loop_starts_without_loading_again(demo_cache):
    from cluster.catalog import CATALOG
    from cluster.config import EngineConfig
    from deployments.engines.transformers_engine import TransformersEngine

    def engine():
        return TransformersEngine(
            str(demo_cache / "demo-models" / "qwen3.5-0.8b"),
            EngineConfig(device="cpu", dtype="float32", torch_threads=1, max_model_len=512),
            thinking_default=False,
            sampling_defaults=CATALOG["0.8b"].sampling,
            random_weights=True,
        )

    async def answer(started):
        await started.start()
        try:
            text, _ = await collect(started, request("the same prompt", temperature=0.0, max_tokens=6))
            return text
        finally:
            await started.shutdown()

    preloaded = engine()
    preloaded.load()  # as a batch actor's constructor does: no event loop on this thread
    model = preloaded._model
    preloaded.load()
    assert preloaded._model is model

    async def start_and_check():
        await preloaded.start()
        assert preloaded._model is model, "start() must reuse the weights load() read"
        return await answer(preloaded)

    assert asyncio.run(start_and_check()) == asyncio.run(answer(engine()))


def test_a_local_checkpoint_path_that_is_missing_is_named_in_one_line(tmp_path):
    from cluster.catalog import CATALOG
    from cluster.config import EngineConfig
    from deployments.engines.base import EngineStartError, check_local_checkpoint
    from deployments.engines.transformers_engine import TransformersEngine

    missing = str(tmp_path / "no-such-checkpoint")
    # Without the check, transformers reads the path as a hub id and complains about repo-id syntax.
    engine = TransformersEngine(
        missing,
        EngineConfig(device="cpu", dtype="float32", torch_threads=1, max_model_len=512),
        thinking_default=False,
        sampling_defaults=CATALOG["0.8b"].sampling,
        random_weights=False,
    )
    with pytest.raises(EngineStartError, match=f"checkpoint folder {missing} does not exist"):
        engine.load()
    with pytest.raises(EngineStartError, match="checkpoint folder ./nowhere does not exist"):
        check_local_checkpoint("./nowhere")
    check_local_checkpoint(str(tmp_path))  # an existing folder
    check_local_checkpoint("Qwen/Qwen3.5-0.8B")  # a hub id is for Hugging Face to resolve
