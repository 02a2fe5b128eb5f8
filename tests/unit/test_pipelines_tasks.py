"""Task prompts, chat messages and output validation."""

from __future__ import annotations

import json

import pytest

from cluster.batch_config import TaskSettings
from deployments.engines.base import ImageInput
from pipelines.schema import ErrorKind, work_row
from pipelines.tasks import TaskCatalog, TaskConfigError, find_json_object, match_label, strip_thinking

pytestmark = pytest.mark.unit

SCHEMA = {
    "type": "object",
    "properties": {"number": {"type": "string"}, "total": {"type": "number"}},
    "required": ["number", "total"],
}


def catalog(prompt: str | None = None, **settings) -> TaskCatalog:
    return TaskCatalog(TaskSettings(**settings), prompt)


def test_templates_name_labels_and_schema():
    tasks = catalog(classify_labels=["invoice", "letter"], extract_schema=SCHEMA)
    assert "invoice, letter" in tasks.instruction("classify", "image")
    assert json.dumps(SCHEMA, sort_keys=True) in tasks.instruction("extract", "pdf_page")
    assert "document page" in tasks.instruction("transcribe", "pdf_page")
    assert "Markdown" in tasks.instruction("transcribe", "image")


def test_custom_prompt_sources_and_checks():
    with pytest.raises(TaskConfigError, match="custom"):
        catalog().check_task("custom")
    with pytest.raises(TaskConfigError, match="unknown task"):
        catalog().check_task("dance")
    with pytest.raises(TaskConfigError):
        catalog("   ")
    assert catalog("Count the chairs").instruction("custom", "image") == "Count the chairs"
    assert catalog(custom_prompt="From config").instruction("custom", "text") == "From config"
    assert catalog("cli wins", custom_prompt="config").instruction("custom", "text") == "cli wins"
    assert catalog().instruction("describe", "image", prompt="row prompt") == "row prompt"


def test_messages_put_the_image_first_and_add_the_text_layer():
    row = work_row(
        doc_id="a.pdf",
        source_uri="s3://b/a.pdf",
        page=2,
        task="describe",
        kind="pdf_page",
        image=b"PNG",
        text="Total 12",
    )
    [message] = catalog().messages(row)
    assert isinstance(message.content[0], ImageInput) and message.content[0].data == b"PNG"
    assert message.content[0].source == "s3://b/a.pdf#page=2"
    assert "text layer" in message.text and "Total 12" in message.text
    text_row = work_row(doc_id="n", source_uri="n.txt", page=1, task="summarize", kind="text", text="hello")
    system, user = catalog(system_prompt="Be brief.").messages(text_row)
    assert (system.role, system.text) == ("system", "Be brief.")
    assert user.images == [] and user.text.endswith("Document:\nhello")


def test_classify_validation():
    tasks = catalog(classify_labels=["invoice", "receipt", "other"])
    assert json.loads(tasks.validate("classify", " Invoice.").output_json) == {"label": "invoice"}
    assert json.loads(tasks.validate("classify", "This is a receipt").output_json) == {"label": "receipt"}
    ambiguous = tasks.validate("classify", "invoice or receipt")
    assert ambiguous.error and ambiguous.error_kind == ErrorKind.INVALID_OUTPUT
    assert tasks.validate("classify", "invoices").error  # not a whole-word match


def test_extract_validation():
    tasks = catalog(extract_schema=SCHEMA)
    good = tasks.validate("extract", 'Here:\n```json\n{"number": "A-1", "total": 12.5}\n```')
    assert good.error is None and json.loads(good.output_json) == {"number": "A-1", "total": 12.5}
    wrong_type = tasks.validate("extract", '{"number": "A-1", "total": "twelve"}')
    assert "total" in wrong_type.error and wrong_type.output_json is None
    missing = tasks.validate("extract", '{"number": "A-1"}')
    assert "total" in missing.error
    assert tasks.validate("extract", "no json here").error == "answer holds no JSON object"


def test_free_text_tasks_pass_through_without_json():
    checked = catalog().validate("describe", "<think>\nhmm\n</think>\n\nA red box.")
    assert (checked.output, checked.output_json, checked.error) == ("A red box.", None, None)


def test_helpers():
    assert strip_thinking("<think>never closed") == ""
    assert strip_thinking("plain") == "plain"
    assert match_label("OTHER", ["invoice", "other"]) == "other"
    assert find_json_object('x {"a": [1, {"b": 2}]} y') == {"a": [1, {"b": 2}]}
    assert find_json_object('[1, 2] then {bad json} then {"ok": true}') == {"ok": True}
