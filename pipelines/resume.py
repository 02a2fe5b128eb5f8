"""What a previous run of the same job already wrote, so a new run skips it.

A row's key is (doc_id, page, task). A document is complete when it has a document-level error row
(page 0) or a row for every page 1..page_count; complete documents are not even read again, and the
pages of a half-done PDF that were written are not rendered again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from pipelines.schema import DOCUMENT_PAGE

# Columns a resume needs from the existing result files.
KEY_COLUMNS: tuple[str, ...] = ("doc_id", "page", "task", "page_count")


@dataclass
class _DocumentProgress:
    pages: set[int] = field(default_factory=set)
    page_count: int | None = None
    failed_whole: bool = False


class DoneIndex:
    """Pages already written, by document and task. Picklable, so it ships to reader actors."""

    def __init__(self) -> None:
        self._documents: dict[tuple[str, str], _DocumentProgress] = {}

    @classmethod
    def from_table(cls, table: pa.Table) -> DoneIndex:
        """Index the key columns (`KEY_COLUMNS`) of existing result rows."""
        index = cls()
        if table.num_rows == 0:
            return index
        columns = table.select(list(KEY_COLUMNS)).to_pydict()
        for doc_id, page, task, page_count in zip(
            columns["doc_id"], columns["page"], columns["task"], columns["page_count"], strict=True
        ):
            index.add(doc_id, page, task, page_count)
        return index

    def add(self, doc_id: str, page: int, task: str, page_count: int | None) -> None:
        """Record one written row."""
        progress = self._documents.setdefault((doc_id, task), _DocumentProgress())
        if page == DOCUMENT_PAGE:
            progress.failed_whole = True
        else:
            progress.pages.add(page)
        if page_count:
            progress.page_count = max(progress.page_count or 0, page_count)

    def __len__(self) -> int:
        return len(self._documents)

    def done_pages(self, doc_id: str, task: str) -> frozenset[int]:
        """Page numbers of `doc_id` already written for `task`."""
        progress = self._documents.get((doc_id, task))
        return frozenset(progress.pages) if progress else frozenset()

    def is_complete(self, doc_id: str, task: str) -> bool:
        """Whether every row of `doc_id` for `task` is written already."""
        progress = self._documents.get((doc_id, task))
        if progress is None:
            return False
        if progress.failed_whole:
            return True
        return progress.page_count is not None and all(
            page in progress.pages for page in range(1, progress.page_count + 1)
        )


def duplicate_keys(table: pa.Table) -> int:
    """How many rows repeat a (doc_id, page, task) key of an earlier row (0 when exactly once holds)."""
    if table.num_rows == 0:
        return 0
    columns = table.select(["doc_id", "page", "task"]).to_pydict()
    counts = Counter(zip(columns["doc_id"], columns["page"], columns["task"], strict=True))
    return sum(count - 1 for count in counts.values() if count > 1)
