"""Page expansion: PDFs, images, text, manifests, bad inputs and resume skipping (local files)."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.documents import (
    DocumentExpander,
    ExpansionSettings,
    kind_from_name,
    sniff_kind,
    split_text,
)
from pipelines.resume import DoneIndex
from pipelines.schema import DOCUMENT_PAGE, ErrorKind
from pipelines.storage import Storage, StorageOptions
from tests.support.sample_corpus import make_image, make_pdf

pytestmark = pytest.mark.unit


def settings(**overrides) -> ExpansionSettings:
    values = dict(
        run_task="describe",
        pdf_dpi=72,
        target_pixels=200_000,
        max_pages_per_doc=50,
        max_input_bytes=1_000_000,
        max_text_chars=200,
        image_format="png",
        custom_prompt_available=False,
    )
    values.update(overrides)
    return ExpansionSettings(**values)


def expand(tmp_path, name: str, data: bytes, done: DoneIndex | None = None, **overrides) -> list[dict]:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    expander = DocumentExpander(Storage(StorageOptions()), settings(**overrides), done or DoneIndex())
    item = {"uri": str(path), "doc_id": name, "size": len(data), "kind": kind_from_name(name)}
    return list(expander.expand(item))


def test_kinds_by_extension_and_magic():
    assert kind_from_name("A/B.PDF") == "pdf"
    assert kind_from_name("x.tiff") == "image"
    assert kind_from_name("notes.md") == "text"
    assert kind_from_name("m.parquet") == "manifest"
    assert kind_from_name("blob.bin") == "unknown"
    assert sniff_kind(make_pdf([["x"]])) == "pdf"
    assert sniff_kind(make_image(20, 20, "webp", 1)) == "image"
    assert sniff_kind(b"PK\x03\x04") == "unknown"


def test_pdf_pages_carry_an_image_and_the_text_layer(tmp_path):
    pdf = make_pdf([["Invoice 17", "Total 99"], ["Second page"], ["Third page"]])
    rows = expand(tmp_path, "docs/inv.pdf", pdf)
    assert [r["page"] for r in rows] == [1, 2, 3]
    assert {r["page_count"] for r in rows} == {3}
    assert all(r["kind"] == "pdf_page" and r["error_kind"] is None for r in rows)
    assert "Invoice 17" in rows[0]["text"] and "Total 99" in rows[0]["text"]
    from PIL import Image

    with Image.open(io.BytesIO(rows[0]["image"])) as page:
        assert page.format == "PNG"
        assert page.width * page.height <= 200_000
        assert abs(page.width / page.height - 612 / 792) < 0.02


def test_pdf_render_is_capped_by_the_engine_limit(tmp_path):
    [row] = expand(tmp_path, "a.pdf", make_pdf([["x"]]), pdf_dpi=300, target_pixels=50_000)
    from PIL import Image

    with Image.open(io.BytesIO(row["image"])) as page:
        assert 40_000 < page.width * page.height <= 50_000


def test_pdf_page_limit(tmp_path):
    rows = expand(tmp_path, "long.pdf", make_pdf([["p"]] * 5), max_pages_per_doc=2)
    assert [r["page"] for r in rows] == [1, 2]
    assert {r["page_count"] for r in rows} == {2}


def test_resume_skips_written_pages_and_complete_documents(tmp_path):
    done = DoneIndex()
    done.add("a.pdf", 1, "describe", 3)
    done.add("a.pdf", 3, "describe", 3)
    rows = expand(tmp_path, "a.pdf", make_pdf([["1"], ["2"], ["3"]]), done=done)
    assert [r["page"] for r in rows] == [2]
    done.add("a.pdf", 2, "describe", 3)
    assert expand(tmp_path, "a.pdf", make_pdf([["1"], ["2"], ["3"]]), done=done) == []
    other_task = expand(tmp_path, "a.pdf", make_pdf([["1"], ["2"], ["3"]]), done=done, run_task="summarize")
    assert len(other_task) == 3


@pytest.mark.parametrize(
    ("name", "data", "kind", "page"),
    [
        ("bad.pdf", b"%PDF-1.4 broken", ErrorKind.CORRUPT_PDF, DOCUMENT_PAGE),
        ("empty.png", b"", ErrorKind.EMPTY, DOCUMENT_PAGE),
        ("blank.txt", b"  \n ", ErrorKind.EMPTY, DOCUMENT_PAGE),
        ("thing.zip", b"PK\x03\x04 zip", ErrorKind.UNSUPPORTED, DOCUMENT_PAGE),
        ("big.txt", b"x" * 2000, ErrorKind.TOO_LARGE, DOCUMENT_PAGE),
    ],
)
def test_bad_inputs_become_one_error_row(tmp_path, name, data, kind, page):
    [row] = expand(tmp_path, name, data, max_input_bytes=1000)
    assert (row["error_kind"], row["page"], row["doc_id"]) == (kind, page, name)
    assert row["error"] and row["image"] is None


def test_unknown_extension_sniffed_as_pdf(tmp_path):
    rows = expand(tmp_path, "scan.bin", make_pdf([["a"], ["b"]]))
    assert [r["kind"] for r in rows] == ["pdf_page", "pdf_page"]


def test_image_is_one_page_with_its_bytes(tmp_path):
    data = make_image(64, 48, "jpeg", 3)
    [row] = expand(tmp_path, "img/p.jpg", data)
    assert (row["kind"], row["page"], row["page_count"], row["image"]) == ("image", 1, 1, data)


def test_text_is_split_into_pages():
    pages = split_text("word " * 100, 120)
    assert all(len(p) <= 120 for p in pages)
    assert " ".join(p.strip() for p in pages).split() == ["word"] * 100


def test_text_file_pages(tmp_path):
    rows = expand(tmp_path, "n.md", ("# Title\n" + "line of text\n" * 40).encode(), max_text_chars=150)
    assert len(rows) > 1 and [r["page"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0]["text"].startswith("# Title") and {r["page_count"] for r in rows} == {len(rows)}


def test_jsonl_manifest(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(make_image(32, 32, "png", 1))
    entries = [
        {"id": "t1", "text": "inline text"},
        {"id": 7, "uri": "../images/a.png", "task": "classify"},
        {"id": "p1", "text": "x", "prompt": "Say hi"},
        {"id": "missing", "uri": "../images/none.png"},
        {"id": "t1", "text": "duplicate id"},
        {"text": "no id"},
        {"id": "both", "text": "x", "uri": "y"},
        {"id": "badtask", "text": "x", "task": "dance"},
    ]
    lines = [json.dumps(e) for e in entries] + ["{not json"]
    rows = expand(tmp_path, "manifests/m.jsonl", "\n".join(lines).encode())
    by_id = {r["doc_id"]: r for r in rows}
    assert by_id["t1"]["text"] == "inline text" and by_id["t1"]["task"] == "describe"
    assert by_id["t1"]["source_uri"].endswith("manifests/m.jsonl#id=t1")
    assert by_id["7"]["kind"] == "image" and by_id["7"]["task"] == "classify"
    assert by_id["7"]["source_uri"] == str(tmp_path / "images" / "a.png")
    assert (by_id["p1"]["task"], by_id["p1"]["prompt"]) == ("custom", "Say hi")
    assert by_id["missing"]["error_kind"] == ErrorKind.UNREADABLE
    assert by_id["manifests/m.jsonl#line 6"]["error_kind"] == ErrorKind.INVALID_MANIFEST_ROW
    assert by_id["both"]["error_kind"] == ErrorKind.INVALID_MANIFEST_ROW
    assert "dance" in by_id["badtask"]["error"]
    assert by_id["manifests/m.jsonl#line 9"]["error_kind"] == ErrorKind.INVALID_MANIFEST_ROW
    assert len(rows) == 8  # the repeated id is dropped


def test_parquet_manifest_and_unreadable_parquet(tmp_path):
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["first", "second"]}), buffer)
    rows = expand(tmp_path, "m.parquet", buffer.getvalue())
    assert [(r["doc_id"], r["text"]) for r in rows] == [("a", "first"), ("b", "second")]
    [bad] = expand(tmp_path, "broken.parquet", b"PAR1 nope")
    assert (bad["doc_id"], bad["error_kind"], bad["page"]) == (
        "broken.parquet",
        ErrorKind.INVALID_MANIFEST,
        0,
    )


def test_manifest_rows_already_done_are_skipped(tmp_path):
    done = DoneIndex()
    done.add("t1", 1, "describe", 1)
    data = "\n".join(json.dumps(e) for e in [{"id": "t1", "text": "a"}, {"id": "t2", "text": "b"}]).encode()
    rows = expand(tmp_path, "m.jsonl", data, done=done)
    assert [r["doc_id"] for r in rows] == ["t2"]
