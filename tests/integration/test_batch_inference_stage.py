"""The inference stage on the real transformers engine (demo checkpoint), without Ray: concurrent
rows, engine refusals as error rows, rows of other sizes passed through, classify/extract decoded
under their constraint, then postprocess; one stage holding two sizes."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from cluster.batch_config import TaskSettings
from pipelines.imaging import fit_image
from pipelines.inference import InferenceStage
from pipelines.schema import ErrorKind, rows_of, to_work_table, work_row
from pipelines.stages import postprocess
from tests.support.sample_corpus import make_image

pytestmark = pytest.mark.integration


def row(doc_id: str, task: str = "describe", size: str = "0.8b", **values) -> dict:
    return work_row(
        doc_id=doc_id,
        source_uri=f"mem://{doc_id}",
        page=1,
        page_count=1,
        task=task,
        size=size,
        thinking=False,
        **values,
    )


@pytest.fixture(scope="module")
def stage(demo_cache):
    from cluster.config import load_config

    config = load_config(profile="demo")
    model = config.model_by_name("0.8b")
    model.engine.max_model_len = 1024
    settings = TaskSettings(
        classify_labels=["invoice", "letter"],
        # classify: room for the longest label split into single characters, plus the end token.
        max_tokens={"describe": 4, "classify": 8, "extract": 6, "summarize": 4},
    )
    return InferenceStage(model, str(demo_cache), settings, None, temperature=0.0, seed=1), settings


def run_stage(inference: InferenceStage, table):
    """One call of the stage on a fresh event loop, then its engine shut down on that loop."""

    async def main():
        try:
            return await inference(table)
        finally:
            await inference.shutdown()

    return asyncio.run(main())


def test_rows_get_outputs_errors_and_pass_through(stage):
    inference, settings = stage
    image = fit_image(
        make_image(300, 200, "jpeg", 1), target_pixels=200_704, max_pixels=10**7, image_format="png"
    )
    truncated_png = make_image(64, 64, "png", 2)[:80]  # a valid header, then nothing
    rows = [
        row("text", kind="text", text="Order 17 ships on Monday."),
        row("image", kind="image", image=image),
        row("broken", kind="image", image=truncated_png),
        row("long", kind="text", text="word " * 3000),
        row("other-size", size="9b", kind="text", text="not mine"),
        row("classify", task="classify", kind="text", text="Dear Sir, thank you."),
        row("extract", task="extract", kind="text", text="Invoice A-1, total 12."),
    ]
    out = {r["doc_id"]: r for r in rows_of(run_stage(inference, to_work_table(rows)))}
    for doc_id in ("text", "image", "classify", "extract"):
        done = out[doc_id]
        assert done["model"] == "qwen3.5-0.8b", done
        assert done["prompt_tokens"] > 0 and 0 < done["completion_tokens"] <= 8 and done["latency_ms"] > 0
    for doc_id in ("text", "image", "classify"):
        assert out[doc_id]["error"] is None, out[doc_id]
    # 6 tokens rarely close a JSON object: a cut answer says so, and keeps what was generated.
    extract = out["extract"]
    if extract["error"] is not None:
        assert extract["error_kind"] == ErrorKind.OUTPUT_TRUNCATED and "max_tokens (6)" in extract["error"]
        assert extract["output"].startswith("{") and extract["completion_tokens"] == 6
    assert out["image"]["prompt_tokens"] > out["text"]["prompt_tokens"]  # image tokens count
    assert out["broken"]["error_kind"] == ErrorKind.INVALID_IMAGE
    assert out["long"]["error_kind"] == ErrorKind.PROMPT_TOO_LONG and "1024" in out["long"]["error"]
    assert out["other-size"]["model"] is None and out["other-size"]["output"] is None
    assert all(r["image"] is None for r in out.values() if r["doc_id"] != "other-size")

    checked = {
        r["doc_id"]: r
        for r in rows_of(
            postprocess(
                to_work_table(list(out.values())),
                task_settings=settings,
                custom_prompt=None,
                fail_on_invalid_output=True,
            )
        )
    }
    # Random weights answer noise, but under the labels' constraint the noise is a label.
    assert json.loads(checked["classify"]["output_json"])["label"] in ("invoice", "letter")
    result = checked["extract"]
    if result["error"] is None:
        assert isinstance(json.loads(result["output_json"]), dict)
    else:
        assert result["error_kind"] == ErrorKind.OUTPUT_TRUNCATED and result["output_json"] is None
    assert checked["text"]["error"] is None and checked["text"]["output_json"] is None


def test_one_actor_holding_several_sizes_answers_each_row_with_its_own(stage, demo_cache):
    # The pool of a colocated branch (batch.colocate_sizes): each actor holds every routed size.
    from cluster.config import load_config

    _, settings = stage
    config = load_config(profile="demo")
    models = [config.model_by_name("0.8b"), config.model_by_name("2b")]
    for model in models:
        model.engine.max_model_len = 1024
    both = InferenceStage(models, str(demo_cache), settings, None, temperature=0.0, seed=1)
    text = "Order 17 ships on Monday."
    rows = [
        row("small", kind="text", text=text),
        row("large", size="2b", kind="text", text=text),
        row("other-size", size="9b", kind="text", text=text),
    ]
    out = {r["doc_id"]: r for r in rows_of(run_stage(both, to_work_table(rows)))}
    assert (out["small"]["model"], out["large"]["model"]) == ("qwen3.5-0.8b", "qwen3.5-2b")
    assert out["small"]["error"] is None and out["large"]["error"] is None
    assert out["other-size"]["model"] is None and out["other-size"]["output"] is None
    # The 0.8b row gets exactly what the 0.8b-only stage gives it (greedy): the engines do not mix.
    alone = InferenceStage(models[0], str(demo_cache), settings, None, temperature=0.0, seed=1)
    [small_alone] = rows_of(run_stage(alone, to_work_table([row("small", kind="text", text=text)])))
    assert out["small"]["output"] == small_alone["output"]


def test_a_slow_grammar_compile_is_waited_for_not_failed(stage, demo_cache):
    # The API refuses a request whose grammar compiles past engine.grammar_compile_timeout_s; a
    # batch job's schema is the operator's and every row shares it, so the stage waits instead.
    from cluster.config import load_config

    _, settings = stage
    model = load_config(profile="demo").model_by_name("0.8b")
    model.engine.grammar_compile_timeout_s = 0.1
    inference = InferenceStage(model, str(demo_cache), settings, None, temperature=0.0, seed=1)
    engine = inference.engines["0.8b"]
    assert engine.config.grammar_compile_timeout_s is None
    compile_constraint = engine._grammars.constraint

    def slow_constraint(spec):
        time.sleep(0.5)
        return compile_constraint(spec)

    engine._grammars.constraint = slow_constraint
    out = rows_of(run_stage(inference, to_work_table([row("slow", task="classify")])))
    assert out[0]["error_kind"] is None and out[0]["output"] in ("invoice", "letter")
