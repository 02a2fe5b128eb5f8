"""Manifests: JSONL or Parquet rows naming documents (`id`, a `uri` or `text`, optional `task`/`prompt`).

A manifest's entries become `DocumentRef`s, the same references listed files become; an entry that is
not valid becomes a `RowError` for that entry only, and a manifest that cannot be parsed at all, one
for the whole manifest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cluster.batch_config import TASK_NAMES
from pipelines.schema import ErrorKind, RowError
from pipelines.storage import Location, parse_uri


@dataclass(frozen=True)
class DocumentRef:
    """One document to expand: a listed file or a manifest entry.

    Attributes:
        doc_id: the document's id in the results (a path below the input prefix, or a manifest id).
        source_uri: where it came from, as written to the results.
        task: the task its rows run.
        prompt: the entry's own prompt, if any.
        location: where to read it (None for inline text).
        size: its size in bytes when the listing gave it.
        text: inline text (manifest entries with `text`).
    """

    doc_id: str
    source_uri: str
    task: str
    prompt: str | None = None
    location: Location | None = None
    size: int | None = None
    text: str | None = None


def manifest_entries(name: str, data: bytes) -> Iterator[tuple[str, Any]]:
    """(`line N` or `row N`, entry) for every entry of a manifest file; JSONL lines that do not parse
    come as a string saying why.

    Raises:
        RowError: `invalid_manifest`, on the first `next`, for a Parquet file that cannot be read or
            has no `id` column.
    """
    if name.lower().endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError, ValueError) as error:
            raise RowError(ErrorKind.INVALID_MANIFEST, f"not a readable Parquet manifest: {error}") from None
        if "id" not in table.column_names:
            raise RowError(ErrorKind.INVALID_MANIFEST, "the Parquet manifest has no `id` column")
        for number, entry in enumerate(table.to_pylist(), start=1):
            yield f"row {number}", entry
        return
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as error:
            yield f"line {number}", f"not valid JSON: {error}"


def entry_reference(
    manifest: DocumentRef, entry: Any, run_task: str, custom_prompt_available: bool
) -> DocumentRef:
    """The document a manifest entry names.

    Args:
        manifest: the manifest itself (relative `uri`s resolve against its folder).
        entry: one parsed entry (a dict), or the string `manifest_entries` gave for a bad line.
        run_task: the task of entries that name none.
        custom_prompt_available: whether `custom` entries without a prompt can use the job's prompt.

    Raises:
        RowError: `invalid_manifest_row`, saying what is wrong with the entry.
    """
    if isinstance(entry, str):
        raise RowError(ErrorKind.INVALID_MANIFEST_ROW, entry)
    if not isinstance(entry, dict):
        raise RowError(ErrorKind.INVALID_MANIFEST_ROW, "an entry must be an object")
    entry_id, uri, text = entry.get("id"), entry.get("uri"), entry.get("text")
    task, prompt = entry.get("task"), entry.get("prompt")
    if not isinstance(entry_id, (str, int)) or isinstance(entry_id, bool) or str(entry_id) == "":
        raise RowError(ErrorKind.INVALID_MANIFEST_ROW, "`id` must be a non-empty string or integer")
    if (uri is None) == (text is None):
        raise RowError(ErrorKind.INVALID_MANIFEST_ROW, "give exactly one of `uri` and `text`")
    if prompt is not None and not isinstance(prompt, str):
        raise RowError(ErrorKind.INVALID_MANIFEST_ROW, "`prompt` must be a string")
    task = task or ("custom" if prompt else run_task)
    if task not in TASK_NAMES:
        raise RowError(
            ErrorKind.INVALID_MANIFEST_ROW, f"unknown task {task!r}; valid: {', '.join(TASK_NAMES)}"
        )
    if task == "custom" and not prompt and not custom_prompt_available:
        raise RowError(ErrorKind.INVALID_MANIFEST_ROW, "task `custom` needs a `prompt`")
    if text is not None:
        if not isinstance(text, str):
            raise RowError(ErrorKind.INVALID_MANIFEST_ROW, "`text` must be a string")
        return DocumentRef(
            doc_id=str(entry_id),
            source_uri=f"{manifest.source_uri}#id={entry_id}",
            task=task,
            prompt=prompt,
            text=text,
        )
    if not isinstance(uri, str):
        raise RowError(ErrorKind.INVALID_MANIFEST_ROW, "`uri` must be a string")
    try:
        location = parse_uri(uri, relative_to=manifest.location.parent)
    except ValueError as error:
        raise RowError(ErrorKind.INVALID_MANIFEST_ROW, str(error)) from None
    return DocumentRef(
        doc_id=str(entry_id), source_uri=location.uri, task=task, prompt=prompt, location=location
    )
