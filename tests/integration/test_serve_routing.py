"""`model: auto` through the real ingress: difficulty routing, headers, bypass, escalation."""

import httpx
import pytest

pytestmark = pytest.mark.integration

SIZES = ["qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.5-9b"]
EASY = "hey, how are you?"
HARD = (
    "Prove rigorously, step by step, that the sum of the reciprocals of the primes diverges. Then write "
    "a Python function with unit tests that estimates the partial sums up to 10**7 using a segmented "
    "sieve, analyse its time and memory complexity, and compare with Mertens' second theorem."
)


def ask(client, content, model="auto", **extra):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=4, **extra
    )


def test_easy_and_hard_prompts_land_on_different_sizes(client):
    easy, hard = ask(client, EASY), ask(client, HARD)
    easy_size, hard_size = easy.headers["x-qwen-routed-model"], hard.headers["x-qwen-routed-model"]
    assert SIZES.index(easy_size) < SIZES.index(hard_size)
    assert float(easy.headers["x-qwen-difficulty"]) < float(hard.headers["x-qwen-difficulty"])
    assert easy.parse().model == easy_size
    routing = hard.parse().model_extra["routing"]
    # The demo profile routes with the learned scorer (MiniLM embeddings + heads), as production does.
    assert routing["model"] == hard_size and routing["scorer"] == "learned"
    # The short reason, then the family and the per-size estimates that decided.
    reason, family, estimates = hard.headers["x-qwen-route-reason"].split(";")
    assert reason == "quality" and family.startswith("family=")
    assert estimates.startswith("p=0.8b:") and routing["estimates"] and routing["family"]


def test_explicit_size_bypasses_the_router(client):
    raw = ask(client, HARD, model="qwen3.5-0.8b")
    assert raw.headers["x-qwen-routed-model"] == "qwen3.5-0.8b"
    assert raw.headers["x-qwen-route-reason"] == "explicit"
    assert "x-qwen-difficulty" not in raw.headers


def test_streamed_auto_carries_routing_headers(client):
    with client.chat.completions.with_streaming_response.create(
        model="auto", messages=[{"role": "user", "content": HARD}], max_tokens=3, stream=True
    ) as response:
        assert response.headers["x-qwen-routed-model"] in SIZES
        chunks = list(response.parse())
    assert chunks[0].model_extra["routing"]["model"] == response.headers["x-qwen-routed-model"]


def test_user_thinking_choice_wins_over_the_router(client):
    raw = ask(client, HARD, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert raw.parse().model_extra["routing"]["thinking"] is False


def test_escalation_forced_by_config(served):
    headers = {"Authorization": f"Bearer {served.api_key}"}
    response = httpx.post(
        served.secure_url + "/chat/completions",
        headers=headers,
        timeout=60,
        json={
            "model": "auto",
            "messages": [{"role": "user", "content": EASY}],
            "max_tokens": 4,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["routing"]["escalated_from"] == "qwen3.5-0.8b"
    assert body["routing"]["escalation_reason"] == "low_confidence"
    assert body["model"] == response.headers["x-qwen-routed-model"] == "qwen3.5-2b"
    assert response.headers["x-qwen-escalated-from"] == "qwen3.5-0.8b"


def test_router_label_runs_end_to_end_on_the_demo_and_says_labels_are_noise(served, tmp_path):
    import json

    from pipelines.router_training.dataset import load_rows
    from pipelines.router_training.labeling import ApiClient, label

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        json.dumps({"id": "a", "prompt": "What is 6 times 7?"}) + "\n"
        + json.dumps({"id": "b", "prompt": "Capital of France?"}) + "\n"
    )
    refs = tmp_path / "a.jsonl"
    refs.write_text(
        json.dumps({"id": "a", "grader": "numeric", "answer": 42}) + "\n"
        + json.dumps({"id": "b", "grader": "judge", "answer": "Paris"}) + "\n"
    )
    out, notes = tmp_path / "correct.jsonl", []
    client = ApiClient(served.base_url)
    try:
        assert label(prompts, refs, out, client, max_tokens=4, log=notes.append) == 2
    finally:
        client.close()
    rows = load_rows(out)
    assert [set(r.correct) for r in rows] == [{"0.8b", "2b", "4b", "9b"}] * 2
    assert any("random-weight" in n and "noise" in n for n in notes)
