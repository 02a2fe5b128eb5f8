"""The JSONL formats the router tools read, and OpenAI messages reduced to a RoutingInput."""

from __future__ import annotations

import base64
import json

import pytest

from deployments.router.routing_input import from_prompt, openai_messages_to_chat
from pipelines.router_training.dataset import DatasetError, load_rows, parse_request, parse_row

pytestmark = pytest.mark.unit


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_prompt_row():
    row = parse_row({"prompt": "What is 2+2?", "size": "0.8b"})
    assert row.request.query == "What is 2+2?"
    assert (row.size, row.label, row.correct, row.split) == ("0.8b", "0.8b", None, None)


def test_public_model_names_are_accepted_as_sizes():
    assert parse_row({"prompt": "x", "size": "qwen3.5-4b"}).size == "4b"


def test_messages_row_with_image_parts_and_count():
    png = base64.b64encode(b"\x89PNG fake").decode()
    row = parse_row(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare these."},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}},
                    ],
                },
            ],
            "images": 1,
            "correct": {"0.8b": 0, "2b": True, "4b": 1, "9b": 1.0},
            "split": "heldout",
            "category": "image",
        }
    )
    assert row.request.query == "Compare these."
    assert row.request.context == "Be brief."
    assert row.request.images == 3
    assert row.correct == {"0.8b": 0.0, "2b": 1.0, "4b": 1.0, "9b": 1.0}
    assert (row.label, row.split, row.category) == ("2b", "heldout", "image")


def test_data_url_images_are_decoded_without_fetching():
    chat = openai_messages_to_chat(
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"abc").decode()},
                    },
                    {"type": "image_url", "image_url": "https://example.com/x.png"},
                ],
            }
        ]
    )
    first, second = chat[0].images
    assert first.data == b"abc"
    assert (second.data, second.source) == (b"", "https://example.com/x.png")


def test_image_count_on_a_prompt_row_adds_placeholder_images():
    request = parse_request({"prompt": "What is this?", "images": 2})
    assert (request.query, request.images) == ("What is this?", 2)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"size": "2b"}, "exactly one of"),
        ({"prompt": "a", "messages": [], "size": "2b"}, "exactly one of"),
        ({"prompt": 3}, "must be a string"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "role"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "unknown part type"),
        ({"prompt": "a", "images": -1}, "non-negative"),
        ({"prompt": "a", "size": "70b"}, "unknown Qwen3.5 size"),
        ({"prompt": "a", "correct": {"2b": 2}}, "in \\[0, 1\\]"),
        ({"prompt": "a", "split": "dev"}, "split"),
    ],
)
def test_bad_rows_are_rejected(obj, message):
    with pytest.raises(ValueError, match=message):
        parse_row(obj)


def test_load_rows_filters_by_split_and_names_bad_lines(tmp_path):
    path = write_jsonl(
        tmp_path / "rows.jsonl",
        [
            {"prompt": "a", "size": "0.8b", "split": "train"},
            "",
            {"prompt": "b", "size": "9b", "split": "heldout"},
        ],
    )
    assert [r.size for r in load_rows(path)] == ["0.8b", "9b"]
    assert [r.line for r in load_rows(path, split="heldout")] == [3]

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "size": "2b"}, "{not json"])
    with pytest.raises(DatasetError, match="bad.jsonl:2: not JSON"):
        load_rows(bad)
    unlabeled = write_jsonl(tmp_path / "unlabeled.jsonl", [{"prompt": "a"}])
    assert len(load_rows(unlabeled)) == 1
    with pytest.raises(DatasetError, match="unlabeled.jsonl:1: a labeled row needs"):
        load_rows(unlabeled, require_label=True)
    with pytest.raises(DatasetError, match="file not found"):
        load_rows(tmp_path / "missing.jsonl")
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"prompt": "a", "size": "2b"}\n{"prompt": "caf\xe9", "size": "2b"}\n')
    with pytest.raises(DatasetError, match="latin1.jsonl:2: not UTF-8 text"):
        load_rows(latin1)
    with pytest.raises(DatasetError, match="cannot be read"):
        load_rows(tmp_path)  # a folder
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"prompt": "a", "size": "2b"}\n')  # as some editors save
    assert [r.size for r in load_rows(bom)] == ["2b"]
    with pytest.raises(DatasetError, match="no rows"):
        load_rows(path, split="nothing")


def test_prompt_request_is_all_query():
    request = from_prompt("Once upon a time")
    assert (request.query, request.context, request.user_turns, request.images) == (
        "Once upon a time",
        "",
        1,
        0,
    )
