"""Routing before pixels: the light pass, route tables, each size's branch reading only its pages,
decoding constraints of classify/extract and the batch command's `--schema` (local files, no Ray)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from cluster.batch_config import TaskSettings
from cluster.cli import main
from cluster.config import load_config
from pipelines.documents import IMAGE_PLACEHOLDER, DocumentExpander, ExpansionSettings, kind_from_name
from pipelines.plan import BatchJobError, BatchJobSpec, plan_job
from pipelines.resume import DoneIndex
from pipelines.routing import ROUTE_COLUMNS, RoutePlan, RouteTable, branch_items, to_route_rows
from pipelines.schema import DOCUMENT_PAGE, ErrorKind, error_row, to_work_table, work_row
from pipelines.storage import Storage, StorageOptions
from pipelines.tasks import TaskCatalog
from tests.support.sample_corpus import make_pdf

pytestmark = pytest.mark.unit


def settings() -> ExpansionSettings:
    return ExpansionSettings(
        run_task="describe",
        pdf_dpi=72,
        target_pixels=200_000,
        max_pages_per_doc=50,
        max_input_bytes=1_000_000,
        max_text_chars=200,
        image_format="png",
        custom_prompt_available=False,
    )


def expand(path, doc_id: str, **kwargs) -> list[dict]:
    expander = DocumentExpander(Storage(StorageOptions()), settings(), DoneIndex(), **kwargs)
    size = path.stat().st_size if path.exists() else 10
    return list(
        expander.expand({"uri": str(path), "doc_id": doc_id, "size": size, "kind": kind_from_name(doc_id)})
    )


def table_for(size: str, pages: dict[str, list[int]], page_count: int = 3) -> RouteTable:
    table = RouteTable(size)
    for doc_id, numbers in pages.items():
        for page in numbers:
            table.add(doc_id, "describe", page, page_count, 0.25 * page, False)
    return table


def test_light_pass_renders_nothing_and_reads_no_image(tmp_path):
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(make_pdf([["Invoice 17"], ["Second page"]]))
    rows = expand(pdf, "a.pdf", light=True)
    assert [r["page"] for r in rows] == [1, 2]
    assert all(r["image"] == IMAGE_PLACEHOLDER for r in rows)  # counted by the router, never decoded
    assert "Invoice 17" in rows[0]["text"]
    # An image file is not even opened: a path that does not exist still gives its light row.
    [image] = expand(tmp_path / "missing.png", "missing.png", light=True)
    assert (image["kind"], image["page"], image["image"], image["error_kind"]) == ("image", 1, b"", None)


def test_branch_reads_only_its_pages_and_stamps_the_decision(tmp_path):
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(make_pdf([["one"], ["two"], ["three"]]))
    routes = table_for("2b", {"a.pdf": [2]})
    rows = expand(pdf, "a.pdf", routes=routes)
    assert [r["page"] for r in rows] == [2]
    assert rows[0]["image"] and rows[0]["page_count"] == 3  # rendered: this branch answers it
    applied = routes.apply(rows[0])
    assert (applied["size"], applied["difficulty"], applied["thinking"]) == ("2b", 0.5, False)
    # A document with no page for this size is skipped before it is read (the file does not exist).
    assert expand(tmp_path / "other.pdf", "other.pdf", routes=routes) == []


def test_branch_document_failure_is_written_once_per_key(tmp_path):
    broken = tmp_path / "bad.pdf"
    broken.write_bytes(b"%PDF-1.4 changed since the light pass")
    split = table_for("4b", {"bad.pdf": [1, 3]})
    split.mark_split("bad.pdf", "describe")  # page 2 belongs to another size
    rows = expand(broken, "bad.pdf", routes=split)
    assert [(r["page"], r["error_kind"], r["page_count"]) for r in rows] == [
        (1, ErrorKind.CORRUPT_PDF, 3),
        (3, ErrorKind.CORRUPT_PDF, 3),
    ]
    whole = table_for("4b", {"bad.pdf": [1, 2, 3]})
    [row] = expand(broken, "bad.pdf", routes=whole)
    assert (row["page"], row["error_kind"]) == (DOCUMENT_PAGE, ErrorKind.CORRUPT_PDF)


def test_branch_leaves_manifest_entry_errors_to_the_light_pass(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join([json.dumps({"id": "t1", "text": "hello"}), json.dumps({"text": "no id"})]))
    light = expand(manifest, "m.jsonl", light=True)
    assert sorted(r["error_kind"] or "" for r in light) == ["", ErrorKind.INVALID_MANIFEST_ROW]
    assert [r["doc_id"] for r in expand(manifest, "m.jsonl", routes=table_for("0.8b", {"t1": [1]}))] == ["t1"]
    assert expand(manifest, "m.jsonl", routes=table_for("0.8b", {"other": [1]})) == []


def light_rows(rows: list[dict]) -> pa.Table:
    return to_route_rows(to_work_table(rows))


def test_route_plan_splits_decisions_from_failed_rows():
    def page(doc_id, number, size, count=2):
        return work_row(
            doc_id=doc_id,
            source_uri=doc_id,
            page=number,
            page_count=count,
            task="describe",
            kind="pdf_page",
            size=size,
            difficulty=0.5,
            thinking=False,
        )

    bad = error_row(
        doc_id="bad.pdf", source_uri="bad.pdf", task="describe", kind=ErrorKind.CORRUPT_PDF, message="x"
    )
    plan = RoutePlan()
    errors = plan.add_decisions(light_rows([page("a.pdf", 1, "0.8b"), page("a.pdf", 2, "9b"), bad]))
    errors2 = plan.add_decisions(light_rows([page("b.pdf", 1, "9b", 1)]))
    plan.finish()
    assert errors.num_rows == 1 and errors2.num_rows == 0 and plan.failed == 1
    assert (
        errors.column("error_kind").to_pylist() == [ErrorKind.CORRUPT_PDF] and "output" in errors.column_names
    )
    assert set(plan.tables) == {"0.8b", "9b"} and plan.rows() == 3
    assert plan.tables["9b"].pages("a.pdf", "describe") == {2}
    assert not plan.tables["9b"].route("a.pdf", "describe").whole  # shared with 0.8b
    assert plan.tables["9b"].route("b.pdf", "describe").whole
    items = [
        {"doc_id": "a.pdf", "kind": "pdf"},
        {"doc_id": "b.pdf", "kind": "pdf"},
        {"doc_id": "m.jsonl", "kind": "manifest"},
    ]
    assert [i["doc_id"] for i in branch_items(items, plan.tables["0.8b"], "describe", "manifest")] == [
        "a.pdf",
        "m.jsonl",
    ]
    assert set(ROUTE_COLUMNS) <= set(light_rows([bad]).column_names) and "text" not in ROUTE_COLUMNS


def test_merged_table_reads_every_routed_page_once_and_stamps_each_with_its_size(tmp_path):
    # The table of a colocated branch (batch.colocate_sizes): one reader for every size's pages.
    plan = RoutePlan()
    plan.tables["0.8b"] = table_for("0.8b", {"a.pdf": [1, 3], "only-small.pdf": [1]})
    plan.tables["9b"] = table_for("9b", {"a.pdf": [2]})
    plan.finish()
    merged = plan.merged()
    assert len(merged) == plan.rows() == 4
    assert merged.documents() == {("a.pdf", "describe"), ("only-small.pdf", "describe")}
    assert merged.route("a.pdf", "describe").whole  # every size's pages are in this one table
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(make_pdf([["one"], ["two"], ["three"]]))
    rows = [merged.apply(row) for row in expand(pdf, "a.pdf", routes=merged)]
    assert [(r["page"], r["size"], r["difficulty"]) for r in rows] == [
        (1, "0.8b", 0.25),
        (2, "9b", 0.5),
        (3, "0.8b", 0.75),
    ]
    assert all(r["image"] for r in rows)  # rendered once, by the one branch
    # A document that fails as a whole is one row, stamped with its first page's size.
    broken = tmp_path / "bad.pdf"
    broken.write_bytes(b"%PDF-1.4 changed since the light pass")
    [failed] = [merged.apply(row) for row in expand(broken, "a.pdf", routes=merged)]
    assert (failed["page"], failed["error_kind"], failed["size"]) == (
        DOCUMENT_PAGE,
        ErrorKind.CORRUPT_PDF,
        "0.8b",
    )


def test_route_table_takes_a_page_size_exactly_when_it_has_none():
    with pytest.raises(ValueError, match="own size"):
        RouteTable("2b").add("a.pdf", "describe", 1, 1, 0.5, False, size="9b")
    with pytest.raises(ValueError, match="own size"):
        RouteTable(None).add("a.pdf", "describe", 1, 1, 0.5, False)


def test_classify_and_extract_decode_under_their_constraint():
    settings = TaskSettings(classify_labels=["invoice", "letter"])
    catalog = TaskCatalog(settings)
    choice = catalog.structured("classify")
    assert (choice.kind, json.loads(choice.spec)) == ("choice", ["invoice", "letter"])
    schema = catalog.structured("extract")
    assert schema.kind == "json_schema" and json.loads(schema.spec) == settings.extract_schema
    assert catalog.structured("describe") is None and catalog.structured("custom") is None


def test_schema_option_of_the_batch_command(tmp_path, capsys):
    base = ["batch", "--input", str(tmp_path), "--output", str(tmp_path / "out")]
    missing = tmp_path / "nope.json"
    assert main([*base, "--task", "extract", "--schema", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main([*base, "--task", "extract", "--schema", str(broken)]) == 1
    assert f"--schema {broken}: not JSON" in capsys.readouterr().err
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"type": "no-such-type"}))
    assert main([*base, "--task", "extract", "--schema", str(invalid)]) == 1
    err = capsys.readouterr().err
    assert f"--schema {invalid}: " in err and "not a valid JSON schema" in err
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}}))
    assert main([*base, "--task", "describe", "--schema", str(good)]) == 1
    assert "--schema is for --task extract" in capsys.readouterr().err


def test_schema_file_replaces_the_configured_schema(tmp_path):
    from pipelines.cli import with_extract_schema

    path = tmp_path / "s.json"
    schema = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}
    path.write_text(json.dumps(schema))
    config = with_extract_schema(load_config(profile="demo"), path)
    assert config.batch.tasks.extract_schema == schema
    plan = plan_job(BatchJobSpec(str(tmp_path), str(tmp_path / "o"), "extract", config))
    assert json.loads(plan.catalog.structured("extract").spec) == schema


def test_a_schema_the_decoder_cannot_compile_fails_before_any_work(tmp_path):
    data = load_config(profile="demo").model_dump(mode="json")
    # Valid draft 2020-12, but the pattern is not a regular expression xgrammar can compile.
    data["batch"]["tasks"]["extract_schema"] = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "(?<=a)b"}},
        "required": ["code"],
    }
    from cluster.config import parse_config

    spec = BatchJobSpec(str(tmp_path), str(tmp_path / "o"), "extract", parse_config(data))
    with pytest.raises(BatchJobError, match="extract schema"):
        plan_job(spec)


def test_light_scorer_hands_the_driver_decisions_without_text():
    from cluster.router_config import RouterConfig
    from pipelines.stages import ScoreLightRows

    stage = ScoreLightRows(
        RouterConfig(enabled=True, scorer="features"), ["0.8b", "2b", "4b", "9b"], TaskSettings(), None, None
    )
    rows = [
        work_row(
            doc_id="page", page=1, page_count=1, task="describe", kind="pdf_page", image=b"", text="x " * 500
        ),
        error_row(doc_id="e", source_uri="e", task="describe", kind="corrupt_pdf", message="x"),
    ]
    out = stage(to_work_table(rows))
    assert out.column_names == list(ROUTE_COLUMNS)
    page, failed = out.to_pylist()
    assert page["size"] in ("0.8b", "2b", "4b", "9b") and 0.0 <= page["difficulty"] <= 1.0
    assert failed["size"] is None and failed["error_kind"] == "corrupt_pdf"


def test_small_jobs_route_in_the_driver_like_the_ray_pass(tmp_path):
    from cluster.config import parse_config
    from pipelines.flow import light_rows_local
    from pipelines.job import list_items

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.pdf").write_bytes(make_pdf([["Invoice 17 " * 40], ["short"]]))
    (tmp_path / "in" / "b.png").write_bytes(b"not even an image: the light pass does not open it")
    (tmp_path / "in" / "c.zip").write_bytes(b"PK")
    data = load_config(profile="demo").model_dump(mode="json")
    data["router"].update(enabled=True, scorer="features")
    plan = plan_job(BatchJobSpec(str(tmp_path / "in"), str(tmp_path / "out"), "describe", parse_config(data)))
    items, _, _ = list_items(Storage(StorageOptions()), plan, DoneIndex())
    routes = RoutePlan()
    errors = [
        routes.add_decisions(table) for table in light_rows_local(plan, items, DoneIndex(), rows_per_table=2)
    ]
    routes.finish()
    assert [e.column("doc_id").to_pylist() for e in errors if e.num_rows] == [["c.zip"]]
    assert routes.rows() == 3 and routes.failed == 1
    routed = {
        (doc, page)
        for t in routes.tables.values()
        for doc, _ in t.documents()
        for page in t.pages(doc, "describe")
    }
    assert routed == {("a.pdf", 1), ("a.pdf", 2), ("b.png", 1)}
