"""The routing table: which size answers each page, decided on the light rows before any pixels.

A routed job first expands every document without rendering (text layers, image counts, page
numbers), scores those light rows, and keeps only the decision per page: a `RouteTable` per size.
Each size's branch then reads and renders only its own pages, so pixels travel through one
inference pool instead of through all of them. A table holds keys and two small values per page, not
text or images, so the driver can keep it and hand it to the branch readers through the object store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.schema import WORK_SCHEMA, to_work_table, work_row

# What the light pass hands the driver per row: the key, the decision, and (for rows that failed
# already) the error columns, so those rows are written without going through any branch.
ROUTE_COLUMNS: tuple[str, ...] = (
    "doc_id",
    "source_uri",
    "page",
    "page_count",
    "task",
    "prompt",
    "kind",
    "size",
    "difficulty",
    "thinking",
    "error",
    "error_kind",
)


@dataclass
class DocumentRoute:
    """The pages of one (document, task) that one size answers.

    Attributes:
        page_count: pages the document has (as the light pass counted them).
        pages: page number -> (difficulty, thinking) for each page routed to this size.
        whole: whether every page the job still has to answer for this document is in `pages`, so a
            failure of the whole document can be written as one document-level error row.
        sizes: page number -> its size, in a table of several sizes (`RouteTable(None)`).
    """

    page_count: int | None
    pages: dict[int, tuple[float | None, bool | None]] = field(default_factory=dict)
    whole: bool = True
    sizes: dict[int, str] = field(default_factory=dict)


def _page_size(route: DocumentRoute | None, page: int) -> str | None:
    """A page's size in a table of several sizes; a document-level row takes its first page's."""
    if route is None or not route.sizes:
        return None
    return route.sizes.get(page) or route.sizes[min(route.sizes)]


class RouteTable:
    """The pages routed to one size, or to several (each page keeps its own). Picklable, so it ships
    to the branch's reader actors.

    Args:
        size: the model size this table feeds; None for a table of several sizes (a colocated branch),
            where every page is added with its size.
    """

    def __init__(self, size: str | None):
        self.size = size
        self._documents: dict[tuple[str, str], DocumentRoute] = {}

    def add(
        self,
        doc_id: str,
        task: str,
        page: int,
        page_count: int | None,
        difficulty,
        thinking,
        size: str | None = None,
    ) -> None:
        """Route one page to this table's size (or to `size`, in a table of several sizes)."""
        if (size is None) == (self.size is None):
            raise ValueError("a page's own size is given exactly when the table has no size of its own")
        route = self._documents.setdefault((doc_id, task), DocumentRoute(page_count))
        route.pages[page] = (difficulty, thinking)
        if size is not None:
            route.sizes[page] = size
        if page_count:
            route.page_count = max(route.page_count or 0, page_count)

    def __len__(self) -> int:
        return sum(len(route.pages) for route in self._documents.values())

    def documents(self) -> set[tuple[str, str]]:
        """The (doc_id, task) keys with at least one page here."""
        return set(self._documents)

    def pages(self, doc_id: str, task: str) -> frozenset[int]:
        """Page numbers of `doc_id` this size answers (empty when none)."""
        route = self._documents.get((doc_id, task))
        return frozenset(route.pages) if route else frozenset()

    def route(self, doc_id: str, task: str) -> DocumentRoute | None:
        """The whole entry of one document, or None."""
        return self._documents.get((doc_id, task))

    def mark_split(self, doc_id: str, task: str) -> None:
        """Record that other sizes answer some of this document's pages as well."""
        route = self._documents.get((doc_id, task))
        if route is not None:
            route.whole = False

    def apply(self, row: dict[str, Any]) -> dict[str, Any]:
        """Copy the page's decision (size, difficulty, thinking) onto a work row read by the branch."""
        route = self._documents.get((row["doc_id"], row["task"]))
        decision = route.pages.get(row["page"]) if route else None
        row["size"] = self.size if self.size is not None else _page_size(route, row["page"])
        if decision is not None:
            row["difficulty"], row["thinking"] = decision
        return row


@dataclass
class RoutePlan:
    """What the light pass decided: a table per size and the rows that already failed.

    Attributes:
        tables: size -> its `RouteTable` (only sizes with at least one page).
        failed: how many light rows were error rows (written by the driver, not by a branch).
    """

    tables: dict[str, RouteTable] = field(default_factory=dict)
    failed: int = 0

    def add_decisions(self, table: pa.Table) -> pa.Table:
        """Take one batch of light rows: route the live ones, return the error rows (to be written).

        Raises:
            ValueError: naming missing columns.
        """
        missing = [name for name in ROUTE_COLUMNS if name not in table.column_names]
        if missing:
            raise ValueError(f"light rows lack columns: {', '.join(missing)}")
        columns = table.select(
            ["doc_id", "task", "page", "page_count", "size", "difficulty", "thinking", "error_kind"]
        )
        for doc_id, task, page, page_count, size, difficulty, thinking, error_kind in zip(
            *columns.to_pydict().values(), strict=True
        ):
            if error_kind is None:
                self.tables.setdefault(size, RouteTable(size)).add(
                    doc_id, task, page, page_count, difficulty, thinking
                )
        errors = table.filter(pc.is_valid(table["error_kind"]))
        self.failed += errors.num_rows
        return to_work_table(work_row(**row) for row in errors.to_pylist())

    def finish(self) -> None:
        """Mark documents whose pages went to more than one size (call once, after the last batch)."""
        owners: dict[tuple[str, str], int] = {}
        for table in self.tables.values():
            for key in table.documents():
                owners[key] = owners.get(key, 0) + 1
        for table in self.tables.values():
            for key in table.documents():
                if owners[key] > 1:
                    table.mark_split(*key)

    def merged(self) -> RouteTable:
        """One table of every size's pages, each page keeping its size (for a colocated branch)."""
        merged = RouteTable(None)
        for size, table in self.tables.items():
            for doc_id, task in table.documents():
                route = table.route(doc_id, task)
                for page, (difficulty, thinking) in route.pages.items():
                    merged.add(doc_id, task, page, route.page_count, difficulty, thinking, size=size)
        return merged

    def rows(self) -> int:
        """Pages routed, over all sizes."""
        return sum(len(table) for table in self.tables.values())


def branch_items(
    items: Iterable[dict[str, Any]], table: RouteTable, run_task: str, manifest_kind: str
) -> list[dict[str, Any]]:
    """The listed items a size's branch has to read: files with pages routed to it, and every
    manifest (its entries are matched against the table while the manifest is read)."""
    wanted = table.documents()
    return [item for item in items if item["kind"] == manifest_kind or (item["doc_id"], run_task) in wanted]


def to_route_rows(batch: pa.Table) -> pa.Table:
    """Light rows as the driver keeps them: without text or image placeholders."""
    return batch.select(list(ROUTE_COLUMNS)).cast(pa.schema([WORK_SCHEMA.field(n) for n in ROUTE_COLUMNS]))
