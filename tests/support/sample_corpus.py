"""A synthetic mixed corpus for demos, tests and benchmarks, with the rows a job should write for it.

Multi-page PDFs with a text layer, images in every accepted format, text and Markdown files, JSONL
and Parquet manifests, and one of every bad input (corrupt PDF, bytes that are not an image, a huge
image, an empty file, an unsupported type, an unreadable object named by a manifest, bad manifest
rows). Everything is generated from fixed seeds, so the same arguments give the same bytes.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines.schema import DOCUMENT_PAGE, ErrorKind

WORDS = [
    "invoice",
    "total",
    "amount",
    "due",
    "date",
    "customer",
    "order",
    "shipment",
    "report",
    "quarterly",
    "revenue",
    "growth",
    "table",
    "figure",
    "summary",
    "contract",
    "party",
    "agreement",
    "signature",
    "page",
    "section",
    "chapter",
    "analysis",
    "result",
    "method",
    "data",
    "model",
]


def _pdf_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[list[str]], width: int = 612, height: int = 792) -> bytes:
    """A PDF whose pages carry these text lines (a real text layer, Helvetica) and a coloured box."""
    objects: list[bytes] = []
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{pid} 0 R" for pid in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for index, lines in enumerate(pages):
        ops = [f"0.{index % 9 + 1} 0.4 0.7 rg 72 {height - 160} 220 40 re f", "0 0 0 rg", "BT", "/F1 14 Tf"]
        ops.append(f"72 {height - 72} Td")
        for line in lines:
            ops.append(f"({_pdf_text(line)}) Tj 0 -20 Td")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1", errors="replace")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_ids[index] + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def make_image(width: int, height: int, image_format: str, seed: int) -> bytes:
    """A picture with a gradient and a few shapes, encoded as PNG, JPEG, WEBP or TIFF."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        box = (
            x0,
            y0,
            min(width - 1, x0 + rng.randrange(20, 200)),
            min(height - 1, y0 + rng.randrange(20, 200)),
        )
        draw.rectangle(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    draw.text((10, 10), f"sample {seed}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format=image_format.upper())
    return buffer.getvalue()


def make_huge_image(pixels: int) -> bytes:
    """A grey PNG with more than `pixels` pixels that still compresses to a few kilobytes."""
    from PIL import Image

    side = int(pixels**0.5) + 16
    buffer = io.BytesIO()
    Image.new("L", (side, side), 200).save(buffer, format="PNG")
    return buffer.getvalue()


def sample_lines(rng: random.Random, count: int) -> list[str]:
    """`count` lines of plausible document words."""
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(5, 10))) for _ in range(count)]


@dataclass(frozen=True)
class ExpectedRow:
    """A row the job should write: its key and the error kind it should carry (None for success)."""

    doc_id: str
    page: int
    task: str
    error_kind: str | None = None


@dataclass
class SampleCorpus:
    """What was written, and what a job over it should produce."""

    keys: list[str] = field(default_factory=list)
    expected: list[ExpectedRow] = field(default_factory=list)

    @property
    def pages(self) -> int:
        """Expected rows that are pages (not document-level errors)."""
        return sum(1 for row in self.expected if row.page != DOCUMENT_PAGE)


def write_sample_corpus(
    put: Callable[[str, bytes], None],
    *,
    task: str,
    pdfs: int = 2,
    pages_per_pdf: int = 3,
    images: int = 4,
    texts: int = 2,
    manifest: bool = True,
    bad_inputs: bool = True,
    huge_image_pixels: int = 50_000_000,
    image_size: tuple[int, int] = (640, 480),
    seed: int = 7,
) -> SampleCorpus:
    """Write a mixed corpus through `put(relative_key, bytes)`.

    Args:
        put: writes one object (to S3, a folder, ...).
        task: the task the job will run (for the expected rows).
        pdfs, pages_per_pdf, images, texts: how many of each good input.
        manifest: also write a JSONL and a Parquet manifest (text rows, a uri row, bad rows).
        bad_inputs: also write one of every bad input.
        huge_image_pixels: the huge image is larger than this (set it above batch.max_image_pixels).
        image_size: width and height of the sample images.
        seed: makes the bytes repeatable.
    """
    rng = random.Random(seed)
    corpus = SampleCorpus()

    def add(key: str, data: bytes, rows: list[ExpectedRow]) -> None:
        put(key, data)
        corpus.keys.append(key)
        corpus.expected.extend(rows)

    for i in range(pdfs):
        key = f"pdfs/report-{i:04d}.pdf"
        pages = [[f"Report {i} page {p + 1}", *sample_lines(rng, 6)] for p in range(pages_per_pdf)]
        add(key, make_pdf(pages), [ExpectedRow(key, p, task) for p in range(1, pages_per_pdf + 1)])
    formats = ("png", "jpeg", "webp", "tiff")
    for i in range(images):
        image_format = formats[i % len(formats)]
        key = f"images/photo-{i:04d}.{'jpg' if image_format == 'jpeg' else image_format}"
        add(key, make_image(*image_size, image_format, seed + i), [ExpectedRow(key, 1, task)])
    for i in range(texts):
        key = f"notes/note-{i:04d}.{'md' if i % 2 else 'txt'}"
        body = ("# Note\n\n" if i % 2 else "") + "\n".join(sample_lines(rng, 8))
        add(key, body.encode(), [ExpectedRow(key, 1, task)])
    if manifest:
        entries = [
            {"id": "m-text-1", "text": "A short memo about the quarterly revenue growth."},
            {"id": "m-text-2", "text": "Order 1234 ships on Monday.", "task": "summarize"},
        ]
        rows = [ExpectedRow("m-text-1", 1, task), ExpectedRow("m-text-2", 1, "summarize")]
        if images:
            entries.append({"id": "m-image", "uri": "../images/photo-0000.png"})
            rows.append(ExpectedRow("m-image", 1, task))
        if bad_inputs:
            entries.append({"id": "m-ghost", "uri": "missing/ghost.png"})
            rows.append(ExpectedRow("m-ghost", DOCUMENT_PAGE, task, ErrorKind.UNREADABLE))
            entries.append({"text": "a row without an id"})
            bad_id = f"manifests/batch.jsonl#line {len(entries)}"
            rows.append(ExpectedRow(bad_id, DOCUMENT_PAGE, task, ErrorKind.INVALID_MANIFEST_ROW))
        add("manifests/batch.jsonl", "\n".join(json.dumps(e) for e in entries).encode(), rows)
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([{"id": "p-text-1", "text": "Parquet manifest row with inline text."}])
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        add("manifests/more.parquet", buffer.getvalue(), [ExpectedRow("p-text-1", 1, task)])
    if bad_inputs:
        add(
            "bad/corrupt.pdf",
            b"%PDF-1.4\n this is not really a PDF",
            [ExpectedRow("bad/corrupt.pdf", DOCUMENT_PAGE, task, ErrorKind.CORRUPT_PDF)],
        )
        add(
            "bad/not-an-image.png",
            bytes(rng.randrange(256) for _ in range(512)),
            [ExpectedRow("bad/not-an-image.png", 1, task, ErrorKind.INVALID_IMAGE)],
        )
        add(
            "bad/huge.png",
            make_huge_image(huge_image_pixels),
            [ExpectedRow("bad/huge.png", 1, task, ErrorKind.IMAGE_TOO_LARGE)],
        )
        add("bad/empty.txt", b"", [ExpectedRow("bad/empty.txt", DOCUMENT_PAGE, task, ErrorKind.EMPTY)])
        add(
            "bad/archive.zip",
            b"PK\x03\x04 not something we read",
            [ExpectedRow("bad/archive.zip", DOCUMENT_PAGE, task, ErrorKind.UNSUPPORTED)],
        )
    return corpus
