"""Qwen3.5 tool calls -> OpenAI `tool_calls`, streamed and not.

Qwen3.5 writes calls in the qwen3_coder XML format (what vLLM's `qwen3_coder` parser reads):

    <tool_call>
    <function=NAME>
    <parameter=P>
    VALUE
    </parameter>
    </function>
    </tool_call>

Values are raw text; they are typed by the tool's `parameters` schema (string as is, integer,
number, boolean, null, and JSON for objects and arrays), as vLLM does, and the arguments become a
JSON string. `XmlToolCallParser` works incrementally on the *answer* text only: the service runs it
after the reasoning splitter, so a call written inside the thinking block stays reasoning and is
never executed (vLLM #39056). A `<think>...</think>` block that appears in the answer anyway is
passed through as text, unparsed, for the same reason.

Forced calls (`tool_choice` required or named) are decoded as JSON (see `structured.py`);
`forced_calls` turns that JSON into calls.
"""

from __future__ import annotations

import ast
import json
import uuid
from typing import Any

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
FUNCTION_OPEN = "<function="
FUNCTION_CLOSE = "</function>"
PARAM_OPEN = "<parameter="
PARAM_CLOSE = "</parameter>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def new_call_id() -> str:
    """An OpenAI-style tool call id."""
    return "call_" + uuid.uuid4().hex[:24]


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [k for k in kind if isinstance(k, str)]
    return []


def convert_value(raw: str, schema: dict[str, Any] | None) -> Any:
    """One XML parameter value typed by its property schema (vLLM qwen3_coder's rules)."""
    types = _types(schema or {})
    if raw.strip().lower() == "null" and ("null" in types or "string" not in types):
        return None
    for kind in types or ["any"]:
        try:
            if kind == "string":
                return raw
            if kind == "integer":
                return int(raw.strip())
            if kind == "number":
                value = float(raw.strip())
                return (
                    int(value) if value.is_integer() and "." not in raw and "e" not in raw.lower() else value
                )
            if kind == "boolean":
                lowered = raw.strip().lower()
                if lowered in ("true", "false"):
                    return lowered == "true"
                continue
            if kind in ("object", "array", "any"):
                try:
                    return json.loads(raw)
                except ValueError:
                    value = ast.literal_eval(raw.strip())
                    if kind == "any" or isinstance(value, dict if kind == "object" else list):
                        return value
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            continue
    return raw


def _held_prefix(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that could start one of `markers`."""
    for keep in range(min(max(len(m) for m in markers) - 1, len(text)), 0, -1):
        tail = text[-keep:]
        if any(m.startswith(tail) for m in markers):
            return keep
    return 0


class XmlToolCallParser:
    """Incremental parser: `feed` answer text, get OpenAI delta pieces.

    Each piece is `{"content": str}` or `{"tool_calls": [...]}` framed as OpenAI streams them: a
    call's first piece has `index`, `id`, `type` and `function.name` with empty arguments; later
    pieces carry `index` and an `arguments` fragment. Joined fragments are one JSON object.

    Args:
        schemas: each tool's `parameters` schema by name.
    """

    def __init__(self, schemas: dict[str, dict[str, Any]]):
        self.schemas = schemas
        self.calls: list[dict[str, Any]] = []  # complete view: id, name, arguments (JSON text)
        self._state = "text"
        self._buffer = ""
        self._params = 0

    def feed(self, text: str) -> list[dict[str, Any]]:
        """Pieces for the text so far; holds back anything that may be the start of a marker."""
        self._buffer += text
        out: list[dict[str, Any]] = []
        while self._step(out):
            pass
        return out

    def flush(self) -> list[dict[str, Any]]:
        """Whatever is held at the end of generation (a cut-off call is closed as far as it got)."""
        out: list[dict[str, Any]] = []
        if self._state in ("text", "think") and self._buffer:
            out.append({"content": self._buffer})
        elif self._state == "call" and self._buffer.strip():
            out.append({"content": CALL_OPEN + self._buffer})
        elif self._state == "params":
            out.append(self._args("{}" if self._params == 0 else "}"))
        self._buffer, self._state = "", "text"
        return out

    # ---- states ---------------------------------------------------------------------------------
    def _step(self, out: list[dict[str, Any]]) -> bool:
        return getattr(self, "_in_" + self._state)(out)

    def _in_text(self, out: list[dict[str, Any]]) -> bool:
        buffer = self._buffer
        found = [(buffer.find(m), m) for m in (CALL_OPEN, THINK_OPEN) if m in buffer]
        if found:
            index, marker = min(found)
            if buffer[:index].strip() or (index and not self.calls):
                out.append({"content": buffer[:index]})
            self._buffer = buffer[index + len(marker) :]
            if marker == THINK_OPEN:
                out.append({"content": THINK_OPEN})
            self._state = "call" if marker == CALL_OPEN else "think"
            return True
        keep = _held_prefix(buffer, (CALL_OPEN, THINK_OPEN))
        emit = buffer[: len(buffer) - keep]
        if emit and (emit.strip() or not self.calls):  # whitespace between calls is not content
            out.append({"content": emit})
        self._buffer = buffer[len(emit) :]
        return False

    def _in_think(self, out: list[dict[str, Any]]) -> bool:
        index = self._buffer.find(THINK_CLOSE)
        if index == -1:
            keep = _held_prefix(self._buffer, (THINK_CLOSE,))
            if len(self._buffer) > keep:
                out.append({"content": self._buffer[: len(self._buffer) - keep]})
                self._buffer = self._buffer[len(self._buffer) - keep :]
            return False
        end = index + len(THINK_CLOSE)
        out.append({"content": self._buffer[:end]})
        self._buffer, self._state = self._buffer[end:], "text"
        return True

    def _in_call(self, out: list[dict[str, Any]]) -> bool:
        start = self._buffer.find(FUNCTION_OPEN)
        end = self._buffer.find(">", start + len(FUNCTION_OPEN)) if start != -1 else -1
        if start == -1 or end == -1:
            return False
        name = self._buffer[start + len(FUNCTION_OPEN) : end].strip()
        self._buffer = self._buffer[end + 1 :]
        call = {"id": new_call_id(), "name": name, "arguments": ""}
        self.calls.append(call)
        self._params = 0
        self._state = "params"
        out.append(
            {
                "tool_calls": [
                    {
                        "index": len(self.calls) - 1,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ]
            }
        )
        return True

    def _in_params(self, out: list[dict[str, Any]]) -> bool:
        stripped = self._buffer.lstrip()
        if stripped.startswith(FUNCTION_CLOSE):
            out.append(self._args("{}" if self._params == 0 else "}"))
            self._buffer = stripped[len(FUNCTION_CLOSE) :]
            self._state = "close"
            return True
        if not stripped.startswith(PARAM_OPEN):
            return False
        name_end = stripped.find(">")
        close = stripped.find(PARAM_CLOSE, name_end + 1) if name_end != -1 else -1
        if close == -1:
            return False
        name = stripped[len(PARAM_OPEN) : name_end].strip()
        raw = stripped[name_end + 1 : close]
        raw = raw[1:] if raw.startswith("\n") else raw
        raw = raw[:-1] if raw.endswith("\n") else raw
        properties = self.schemas.get(self.calls[-1]["name"], {}).get("properties", {})
        value = convert_value(raw, properties.get(name) if isinstance(properties, dict) else None)
        piece = json.dumps(name, ensure_ascii=False) + ": " + json.dumps(value, ensure_ascii=False)
        out.append(self._args(("{" if self._params == 0 else ", ") + piece))
        self._params += 1
        self._buffer = stripped[close + len(PARAM_CLOSE) :]
        return True

    def _in_close(self, out: list[dict[str, Any]]) -> bool:
        stripped = self._buffer.lstrip()
        if stripped.startswith(CALL_CLOSE):
            self._buffer, self._state = stripped[len(CALL_CLOSE) :], "text"
            return True
        if stripped and not CALL_CLOSE.startswith(stripped):  # a missing </tool_call>: be lenient
            self._buffer, self._state = stripped, "text"
            return True
        return False

    def _args(self, fragment: str) -> dict[str, Any]:
        self.calls[-1]["arguments"] += fragment
        index = len(self.calls) - 1
        return {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}


def forced_calls(text: str, mode: str, forced_name: str | None) -> list[dict[str, Any]] | None:
    """The calls in the JSON a forced tool choice was decoded under; None if it does not parse
    (only possible when generation was cut off by `max_tokens`)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if mode == "named":
        pairs = [(forced_name or "", value)]
    else:
        if not isinstance(value, list):
            return None
        pairs = [
            (item.get("name", ""), item.get("parameters", {})) for item in value if isinstance(item, dict)
        ]
    return [
        {
            "id": new_call_id(),
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
        }
        for name, args in pairs
    ]


class RequiredCallStream:
    """Incremental reader of the JSON array a `tool_choice: "required"` request is decoded under.

    `feed` returns each `{"name", "parameters"}` item as an OpenAI call as soon as its closing brace
    arrives, so a stream carries every call when it completes (as vLLM streams them) and a
    generation cut by `max_tokens` still yields the calls it finished; the unfinished tail is
    dropped, never shown as raw JSON.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._item: list[str] = []

    def feed(self, text: str) -> list[dict[str, Any]]:
        """The calls completed by `text` (in order; each with a fresh id)."""
        done: list[dict[str, Any]] = []
        for char in text:
            if self._depth >= 2:
                self._item.append(char)
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
                continue
            if char == '"':
                self._in_string = True
            elif char in "[{":
                self._depth += 1
                if self._depth == 2:
                    self._item = [char]
            elif char in "]}":
                self._depth -= 1
                if self._depth == 1:
                    call = self._call("".join(self._item))
                    if call is not None:
                        done.append(call)
                    self._item = []
        self.calls.extend(done)
        return done

    @staticmethod
    def _call(item: str) -> dict[str, Any] | None:
        try:
            value = json.loads(item)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        return {
            "id": new_call_id(),
            "type": "function",
            "function": {
                "name": str(value.get("name", "")),
                "arguments": json.dumps(value.get("parameters", {}), ensure_ascii=False),
            },
        }
