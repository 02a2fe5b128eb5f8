"""Turn listed objects into page rows: PDFs (rendered pages + text layer), images, text, manifests.

Everything that can go wrong with one input (unreadable, empty, too big, corrupt, unsupported) becomes
an error row for that document and the job goes on. Pages a previous run already wrote are skipped
before they are rendered.

Two passes of a routed job use the same code: the light pass (`light=True`) renders nothing and reads
no image (pages carry an empty image placeholder, which is all a router counts), and each size's
branch (`routes=`) reads and renders only the pages routed to that size.
"""

from __future__ import annotations

import logging
import math
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipelines.imaging import encode_image
from pipelines.manifests import DocumentRef, entry_reference, manifest_entries
from pipelines.resume import DoneIndex
from pipelines.routing import RouteTable
from pipelines.schema import (
    DOCUMENT_PAGE,
    KIND_IMAGE,
    KIND_PDF_PAGE,
    KIND_TEXT,
    ErrorKind,
    RowError,
    error_row,
    work_row,
)
from pipelines.storage import Location, Storage, parse_uri

log = logging.getLogger(__name__)

KIND_PDF = "pdf"
KIND_MANIFEST = "manifest"
KIND_UNKNOWN = "unknown"

_KIND_BY_EXTENSION = {
    ".pdf": KIND_PDF,
    ".png": KIND_IMAGE,
    ".jpg": KIND_IMAGE,
    ".jpeg": KIND_IMAGE,
    ".webp": KIND_IMAGE,
    ".tif": KIND_IMAGE,
    ".tiff": KIND_IMAGE,
    ".txt": KIND_TEXT,
    ".md": KIND_TEXT,
    ".markdown": KIND_TEXT,
    ".jsonl": KIND_MANIFEST,
    ".parquet": KIND_MANIFEST,
}


def kind_from_name(name: str) -> str:
    """The input kind a file name's extension says (`unknown` when it says nothing we read)."""
    return _KIND_BY_EXTENSION.get(posixpath.splitext(name.lower())[1], KIND_UNKNOWN)


def sniff_kind(data: bytes) -> str:
    """The kind of an object whose name did not say: PDF or image by their magic bytes."""
    if data.lstrip()[:5] == b"%PDF-":
        return KIND_PDF
    signatures = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")
    if data.startswith(signatures) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return KIND_IMAGE
    return KIND_UNKNOWN


@dataclass(frozen=True)
class ExpansionSettings:
    """What page expansion needs from the config and the command line.

    Attributes:
        run_task: the job's task, for rows that do not name their own.
        pdf_dpi: render resolution of PDF pages.
        target_pixels: largest page image handed on (the engine's image_max_pixels).
        max_pages_per_doc: pages processed per document.
        max_input_bytes: largest object read.
        max_text_chars: characters per text page.
        image_format: `png` or `jpeg` for rendered pages.
        custom_prompt_available: whether the `custom` task has a run-level prompt.
    """

    run_task: str
    pdf_dpi: int
    target_pixels: int
    max_pages_per_doc: int
    max_input_bytes: int
    max_text_chars: int
    image_format: str
    custom_prompt_available: bool


def split_text(text: str, max_chars: int) -> list[str]:
    """Split text into pages of at most `max_chars`, preferring to cut at a line break or space."""
    pages: list[str] = []
    rest = text
    while len(rest) > max_chars:
        cut = max(rest.rfind("\n", 0, max_chars), rest.rfind(" ", 0, max_chars))
        cut = cut if cut > max_chars // 2 else max_chars
        pages.append(rest[:cut])
        rest = rest[cut:].lstrip()
    if rest.strip():
        pages.append(rest)
    return pages


# The image of a light row: present (so the router counts it) but empty (nothing decoded or rendered).
IMAGE_PLACEHOLDER = b""


class ManifestChangedError(RuntimeError):
    """A manifest the light pass read could not be read again by a branch; a rerun resumes."""


class DocumentExpander:
    """Expands input items into work rows.

    Args:
        storage: where objects are read from.
        settings: limits and rendering settings.
        done: rows a previous run already wrote (skipped here).
        light: render nothing and read no image file: pages carry `IMAGE_PLACEHOLDER` (routing pass).
        routes: expand only the pages this table routes to its size (a branch of a routed job). Failures
            of a whole document become one error row per page of this size (one document-level row
            when the size answers the whole document); manifest entry errors are left to the light
            pass, which wrote them.
    """

    def __init__(
        self,
        storage: Storage,
        settings: ExpansionSettings,
        done: DoneIndex,
        *,
        light: bool = False,
        routes: RouteTable | None = None,
    ):
        self.storage = storage
        self.settings = settings
        self.done = done
        self.light = light
        self.routes = routes

    def _skipped(self, ref: DocumentRef) -> frozenset[int]:
        """Pages a previous run wrote already."""
        return self.done.done_pages(ref.doc_id, ref.task)

    @staticmethod
    def _wanted(number: int, done: frozenset[int], mine: frozenset[int] | None) -> bool:
        """Whether to produce page `number`: not written yet, and (in a branch) routed to this size."""
        return number not in done and (mine is None or number in mine)

    def expand(self, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Work rows of one listed item (`uri`, `doc_id`, `size`, `kind`)."""
        location = parse_uri(item["uri"])
        if item["kind"] == KIND_MANIFEST:
            yield from self._expand_manifest(location, item["doc_id"], item["size"])
            return
        ref = DocumentRef(
            doc_id=item["doc_id"],
            source_uri=location.uri,
            task=self.settings.run_task,
            location=location,
            size=item["size"],
        )
        yield from self.expand_document(ref)

    def expand_document(self, ref: DocumentRef) -> Iterator[dict[str, Any]]:
        """Work rows of one document; an error row when it cannot be read or opened."""
        if self.done.is_complete(ref.doc_id, ref.task):
            return
        if self.routes is not None and not self.routes.pages(ref.doc_id, ref.task):
            return  # another size answers all of it: not even read
        try:
            if ref.text is not None:
                yield from self._text_pages(ref, ref.text)
                return
            kind = kind_from_name(ref.location.name)
            if self.light and kind == KIND_IMAGE:
                # The router only counts images: the file is read (and checked) by its size's branch.
                yield from self._image_page(ref, IMAGE_PLACEHOLDER)
                return
            data = self._read(ref)
            if kind == KIND_UNKNOWN:
                kind = sniff_kind(data)
            if kind == KIND_PDF:
                yield from self._pdf_pages(ref, data)
            elif kind == KIND_IMAGE:
                yield from self._image_page(ref, IMAGE_PLACEHOLDER if self.light else data)
            elif kind == KIND_TEXT:
                yield from self._text_pages(ref, data.decode("utf-8", errors="replace").lstrip("\ufeff"))
            elif kind == KIND_MANIFEST:
                raise RowError(ErrorKind.UNSUPPORTED, "a manifest entry may not point at another manifest")
            else:
                raise RowError(
                    ErrorKind.UNSUPPORTED,
                    "not a PDF, image (PNG, JPEG, WebP, TIFF), text or Markdown file, nor a manifest",
                )
        except RowError as error:
            yield from self._document_failed(ref, error)

    def _document_failed(self, ref: DocumentRef, error: RowError) -> Iterator[dict[str, Any]]:
        """The error rows of a document that could not be read or opened at all."""
        route = self.routes.route(ref.doc_id, ref.task) if self.routes is not None else None
        if route is None or route.whole:
            yield self._error(ref, error.kind, error.message)
            return
        # Other sizes answer the document's other pages: fail only this size's, one row each, so
        # every key is still written exactly once.
        for page in sorted(route.pages):
            row = self._error(ref, error.kind, error.message, page=page)
            row["page_count"] = route.page_count
            yield row

    # ---- reading ----------------------------------------------------------------------------------
    def _read(self, ref: DocumentRef) -> bytes:
        try:
            size = ref.size if ref.size is not None else self.storage.size_of(ref.location)
            if size > self.settings.max_input_bytes:
                raise RowError(
                    ErrorKind.TOO_LARGE,
                    f"object is {size:,} bytes; the limit is {self.settings.max_input_bytes:,} (max_input_bytes)",
                )
            data = self.storage.read_bytes(ref.location)
        except RowError:
            raise
        except (OSError, ValueError) as error:
            raise RowError(ErrorKind.UNREADABLE, f"could not read {ref.source_uri}: {error}") from None
        if not data:
            raise RowError(ErrorKind.EMPTY, "the file is empty")
        if len(data) > self.settings.max_input_bytes:
            raise RowError(ErrorKind.TOO_LARGE, f"object grew to {len(data):,} bytes while it was read")
        return data

    def _error(self, ref: DocumentRef, kind: str, message: str, page: int = DOCUMENT_PAGE) -> dict[str, Any]:
        row = error_row(
            doc_id=ref.doc_id, source_uri=ref.source_uri, task=ref.task, kind=kind, message=message, page=page
        )
        row["prompt"] = ref.prompt
        return row

    def _page_row(self, ref: DocumentRef, page: int, page_count: int, kind: str, **payload) -> dict[str, Any]:
        return work_row(
            doc_id=ref.doc_id,
            source_uri=ref.source_uri,
            page=page,
            page_count=page_count,
            task=ref.task,
            prompt=ref.prompt,
            kind=kind,
            **payload,
        )

    def _page_limit(self, ref: DocumentRef, pages: int) -> int:
        if pages > self.settings.max_pages_per_doc:
            log.warning(
                "%s has %d pages; only the first %d are processed (max_pages_per_doc)",
                ref.source_uri,
                pages,
                self.settings.max_pages_per_doc,
            )
        return min(pages, self.settings.max_pages_per_doc)

    # ---- kinds ------------------------------------------------------------------------------------
    def _mine(self, ref: DocumentRef) -> frozenset[int] | None:
        """Pages this expander produces for `ref` (None: all of them)."""
        return self.routes.pages(ref.doc_id, ref.task) if self.routes is not None else None

    def _image_page(self, ref: DocumentRef, data: bytes) -> Iterator[dict[str, Any]]:
        if self._wanted(1, self._skipped(ref), self._mine(ref)):
            yield self._page_row(ref, 1, 1, KIND_IMAGE, image=data)

    def _text_pages(self, ref: DocumentRef, text: str) -> Iterator[dict[str, Any]]:
        if not text.strip():
            raise RowError(ErrorKind.EMPTY, "the document has no text")
        pages = split_text(text, self.settings.max_text_chars)
        count = self._page_limit(ref, len(pages))
        done, mine = self._skipped(ref), self._mine(ref)
        for number, page_text in enumerate(pages[:count], start=1):
            if self._wanted(number, done, mine):
                yield self._page_row(ref, number, count, KIND_TEXT, text=page_text)

    def _pdf_pages(self, ref: DocumentRef, data: bytes) -> Iterator[dict[str, Any]]:
        import pypdfium2 as pdfium

        try:
            pdf = pdfium.PdfDocument(data)
        except (pdfium.PdfiumError, ValueError, OSError) as error:
            raise RowError(ErrorKind.CORRUPT_PDF, f"not a readable PDF: {error}") from None
        try:
            if len(pdf) == 0:
                raise RowError(ErrorKind.CORRUPT_PDF, "the PDF has no pages")
            count = self._page_limit(ref, len(pdf))
            done, mine = self._skipped(ref), self._mine(ref)
            for number in range(1, count + 1):
                if not self._wanted(number, done, mine):
                    continue
                try:
                    image, text = (
                        self._text_only(pdf, number - 1) if self.light else self._render(pdf, number - 1)
                    )
                except (pdfium.PdfiumError, ValueError, OSError) as error:
                    row = self._error(ref, ErrorKind.RENDER_FAILED, f"page {number}: {error}", page=number)
                    row["page_count"] = count
                    yield row
                    continue
                yield self._page_row(ref, number, count, KIND_PDF_PAGE, image=image, text=text)
        finally:
            pdf.close()

    def _render_scale(self, width_pt: float, height_pt: float) -> float:
        """Points-to-pixels scale: the configured DPI, lowered so the page fits `target_pixels`."""
        scale = self.settings.pdf_dpi / 72
        target = self.settings.target_pixels
        if width_pt * height_pt * scale * scale > target:
            scale = math.sqrt(target / (width_pt * height_pt))
            # PDFium rounds the bitmap size up; step down until the rounded size fits.
            while math.ceil(width_pt * scale) * math.ceil(height_pt * scale) > target and scale > 1e-3:
                scale *= 0.995
        return scale

    def _render(self, pdf, index: int) -> tuple[bytes, str | None]:
        page = pdf[index]
        try:
            bitmap = page.render(scale=self._render_scale(*page.get_size()))
            return encode_image(bitmap.to_pil(), self.settings.image_format), _text_layer(page)
        finally:
            page.close()

    def _text_only(self, pdf, index: int) -> tuple[bytes, str | None]:
        """A page's text layer and the image placeholder: what the light pass needs, without rendering."""
        page = pdf[index]
        try:
            return IMAGE_PLACEHOLDER, _text_layer(page)
        finally:
            page.close()

    # ---- manifests --------------------------------------------------------------------------------
    def _expand_manifest(self, location: Location, manifest_id: str, size: int) -> Iterator[dict[str, Any]]:
        manifest = DocumentRef(
            doc_id=manifest_id,
            source_uri=location.uri,
            task=self.settings.run_task,
            location=location,
            size=size,
        )
        if self.done.is_complete(manifest.doc_id, manifest.task):
            return  # the whole manifest failed in an earlier run
        seen: set[tuple[str, str]] = set()
        try:
            entries = manifest_entries(manifest.location.name, self._read(manifest))
            pending = next(entries, None)
        except RowError as error:
            if self.routes is not None:
                # The light pass read it (or wrote this error row itself): something changed under us.
                raise ManifestChangedError(f"{location.uri}: {error.message}") from None
            yield self._error(manifest, error.kind, error.message)
            return
        while pending is not None:
            line, entry = pending
            pending = next(entries, None)
            try:
                ref = entry_reference(
                    manifest, entry, self.settings.run_task, self.settings.custom_prompt_available
                )
            except RowError as error:
                entry_id = entry.get("id") if isinstance(entry, dict) else None
                doc_id = str(entry_id) if entry_id not in (None, "") else f"{manifest_id}#{line}"
                bad = DocumentRef(
                    doc_id=doc_id, source_uri=f"{location.uri}#{line}", task=self.settings.run_task
                )
                if self.routes is None and not self.done.is_complete(bad.doc_id, bad.task):
                    yield self._error(bad, error.kind, f"manifest {line}: {error.message}")
                continue
            if (ref.doc_id, ref.task) in seen:
                if self.routes is not None:
                    continue  # the light pass warned already
                log.warning(
                    "manifest %s repeats id %r (task %s); only the first is used",
                    location.uri,
                    ref.doc_id,
                    ref.task,
                )
                continue
            seen.add((ref.doc_id, ref.task))
            yield from self.expand_document(ref)


def _text_layer(page) -> str | None:
    """A PDF page's text layer, or None when it has none."""
    textpage = page.get_textpage()
    try:
        return textpage.get_text_range().strip() or None
    finally:
        textpage.close()
