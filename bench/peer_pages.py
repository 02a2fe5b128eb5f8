"""Mixed pages for bench/ray_data_llm_peer.py (`--corpus pages`): the corpus on disk, and what a Ray
Data LLM user writes to turn it into vision requests.

The corpus is `bench/batch_throughput.py`'s shape on a local folder: half the pages from five-page
PDFs (a text layer and a coloured box), half single 800x600 images (PNG and JPEG). Our job reads the
folder itself (`qwen-cluster batch --input DIR --task describe`). For Ray Data LLM, `page_rows`
renders each PDF page with pypdfium2 at our job's resolution (110 dpi, shrunk to the engine's
`image_max_pixels`) and passes images as they are; `describe_messages` asks exactly what our
`describe` task asks (the job's own `TaskCatalog` writes the text), in the OpenAI chat format its
multimodal stage parses, the image as a data URL.
"""

from __future__ import annotations

import base64
import io
import math
import random
from pathlib import Path
from typing import Any

PAGES_PER_PDF = 5
PDF_DPI = 110
# The demo profile's engine.image_max_pixels: both runs hand the engine pages of at most this size.
IMAGE_MAX_PIXELS = 200_704


def write_pages(folder: Path, pages: int) -> int:
    """Write `pages` pages (half PDF pages, half images) under `folder`; returns the page count."""
    from tests.support.sample_corpus import make_image, make_pdf, sample_lines

    rng = random.Random(pages)
    (folder / "pdfs").mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    pdfs = (pages // 2) // PAGES_PER_PDF
    for i in range(pdfs):
        body = make_pdf([[f"Document {i} page {p + 1}", *sample_lines(rng, 12)] for p in range(PAGES_PER_PDF)])
        (folder / "pdfs" / f"doc-{i:05d}.pdf").write_bytes(body)
    images = pages - pdfs * PAGES_PER_PDF
    for i in range(images):
        image_format = "png" if i % 2 else "jpeg"
        (folder / "images" / f"img-{i:05d}.{image_format}").write_bytes(make_image(800, 600, image_format, seed=i))
    return pdfs * PAGES_PER_PDF + images


def _render_scale(width_pt: float, height_pt: float) -> float:
    scale = PDF_DPI / 72
    if width_pt * height_pt * scale * scale > IMAGE_MAX_PIXELS:
        scale = math.sqrt(IMAGE_MAX_PIXELS / (width_pt * height_pt)) * 0.99
    return scale


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def page_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Ray Data `flat_map` over `read_binary_files(..., include_paths=True)`: one row per page."""
    from pipelines.schema import KIND_IMAGE, KIND_PDF_PAGE

    path, data = row["path"], row["bytes"]
    name = Path(path).name
    if not name.endswith(".pdf"):
        mime = "image/png" if name.endswith(".png") else "image/jpeg"
        return [{"id": name, "image_url": _data_url(data, mime), "text": "", "kind": KIND_IMAGE}]
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    out = []
    try:
        for index in range(len(pdf)):
            page = pdf[index]
            try:
                bitmap = page.render(scale=_render_scale(*page.get_size()))
                buffer = io.BytesIO()
                bitmap.to_pil().save(buffer, format="PNG", compress_level=1)
                textpage = page.get_textpage()
                text = textpage.get_text_range().strip()
                textpage.close()
            finally:
                page.close()
            out.append(
                {
                    "id": f"{name}#page={index + 1}",
                    "image_url": _data_url(buffer.getvalue(), "image/png"),
                    "text": text,
                    "kind": KIND_PDF_PAGE,
                }
            )
    finally:
        pdf.close()
    return out


def describe_messages(row: dict[str, Any], catalog) -> list[dict[str, Any]]:
    """The chat our `describe` task sends for this page (`catalog`: the job's `TaskCatalog`), in
    OpenAI's format: the catalog writes the system message and the instruction with the page's text
    layer; the image goes first, as a data URL."""
    work_row = {
        "task": "describe", "kind": row["kind"], "prompt": None, "image": None, "text": row["text"],
        "source_uri": row["id"], "page": 1,
    }  # fmt: skip
    messages: list[dict[str, Any]] = []
    for message in catalog.messages(work_row):
        (text,) = message.content  # no image was given: the text alone
        if message.role == "system":
            messages.append({"role": "system", "content": text})
        else:
            image = {"type": "image_url", "image_url": {"url": row["image_url"]}}
            messages.append({"role": message.role, "content": [image, {"type": "text", "text": text}]})
    return messages
