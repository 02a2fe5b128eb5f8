"""The labelling loop: graders, and `label` against an OpenAI-shaped HTTP surface (httpx mock transport)."""

from __future__ import annotations

import json

import httpx
import pytest

from pipelines.router_training.dataset import DatasetError, load_rows
from pipelines.router_training.labeling import ApiClient, Reference, grade, label, load_references

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("reference", "answer", "expected"),
    [
        (Reference("exact", "Paris"), "paris", 1.0),
        (Reference("exact", "Paris"), "I think the answer is\nParis", 1.0),
        (Reference("exact", "Paris"), "Lyon", 0.0),
        (Reference("numeric", 1234.5), "so the total is 1,234.5 dollars", 1.0),
        (Reference("numeric", 42), "first 41, then 43", 0.0),
        (Reference("numeric", 42), "no idea", 0.0),
        (Reference("choice", "c"), "The answer is C because ...", 1.0),
        (Reference("choice", "B"), "A", 0.0),
        (Reference("json_schema", None, schema={"type": "object", "required": ["a"]}), '```json\n{"a": 1}\n```', 1.0),
        (Reference("json_schema", None, schema={"type": "object", "required": ["a"]}), '{"b": 1}', 0.0),
        (Reference("json_schema", None, schema={"type": "object"}), "not json", 0.0),
    ],
)
def test_graders(reference, answer, expected):
    assert grade(reference, answer) == expected


def test_judge_grader_asks_the_judge():
    prompts = []

    def judge(prompt):
        prompts.append(prompt)
        return "YES."

    assert grade(Reference("judge", "a warm greeting"), "Hello there!", judge) == 1.0
    assert "a warm greeting" in prompts[0] and "Hello there!" in prompts[0]
    with pytest.raises(ValueError, match="judge"):
        grade(Reference("judge", "x"), "y")


def server(random_weights: bool):
    """An OpenAI-shaped handler: 9b and 4b answer 42, the smaller sizes 7."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            cards = [{"id": f"qwen3.5-{s}", "size": s, "random_weights": random_weights} for s in ("0.8b", "2b", "4b", "9b")]
            return httpx.Response(200, json={"object": "list", "data": [*cards, {"id": "auto"}]})
        body = json.loads(request.content)
        assert body["chat_template_kwargs"] == {"enable_thinking": False}
        content = "42" if body["model"].endswith(("4b", "9b")) else "7"
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": content}}]})

    return httpx.MockTransport(handle)


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_label_writes_per_size_correct_rows_and_says_when_weights_are_random(tmp_path):
    prompts = write(tmp_path / "p.jsonl", [{"id": "q1", "prompt": "6 * 7?", "family": "arithmetic"}])
    refs = write(tmp_path / "a.jsonl", [{"id": "q1", "grader": "numeric", "answer": 42}])
    out = tmp_path / "out" / "correct.jsonl"
    notes = []
    client = ApiClient("http://server/v1", transport=server(random_weights=True))
    assert label(prompts, refs, out, client, log=notes.append) == 1
    rows = load_rows(out)
    assert rows[0].correct == {"0.8b": 0.0, "2b": 0.0, "4b": 1.0, "9b": 1.0}
    assert rows[0].family == "arithmetic"
    assert any("labels are too" in n for n in notes)
    quiet = []
    label(prompts, refs, out, ApiClient("http://server", transport=server(False)), log=quiet.append)
    assert not any("noise" in n for n in quiet)


@pytest.mark.parametrize(
    ("prompts", "refs", "message"),
    [
        ([{"id": "q1", "prompt": "x"}], [{"id": "q1", "grader": "magic", "answer": 1}], r"a.jsonl:1: `grader`"),
        ([{"id": "q1", "prompt": "x"}], [{"id": "q1", "grader": "json_schema"}], r"a.jsonl:1: grader json_schema"),
        ([{"id": "q2", "prompt": "x"}], [{"id": "q1", "answer": 1}], r"p.jsonl:1: no reference row with id 'q2'"),
        ([{"id": "q1"}], [{"id": "q1", "answer": 1}], r"p.jsonl:1: a row needs exactly one"),
    ],
)
def test_label_rejects_malformed_rows_and_writes_nothing(tmp_path, prompts, refs, message):
    p, a = write(tmp_path / "p.jsonl", prompts), write(tmp_path / "a.jsonl", refs)
    out = tmp_path / "correct.jsonl"
    with pytest.raises(DatasetError, match=message):
        label(p, a, out, ApiClient("http://server", transport=server(False)))
    assert not out.exists() and sorted(x.name for x in tmp_path.iterdir()) == ["a.jsonl", "p.jsonl"]


def test_references_need_an_id(tmp_path):
    with pytest.raises(DatasetError, match="needs `id`"):
        load_references(write(tmp_path / "a.jsonl", [{"answer": 1}]))
