"""The labelling loop: `qwen-cluster router label --input P.jsonl --reference A.jsonl --base-url URL`.

Runs every prompt on every served size through the OpenAI-compatible API, grades each answer against
the reference and writes one row per prompt with per-size `correct` (0/1), ready for
`router train --correct`. Graders (the reference row's `grader`):
- `exact`: the answer, trimmed and case-folded, equals `answer` (or ends with it on its last line);
- `numeric`: the last number in the answer equals `answer` within `tolerance` (default 1e-6, relative);
- `choice`: the first standalone option letter (A-J) in the answer equals `answer`;
- `json_schema`: the answer (or its first ```json block) is JSON valid against `schema`;
- `judge`: the `judge` size (default the largest served) is asked whether the answer matches
  `answer`, and its YES/NO is the grade.
The output is written to a temporary file and renamed at the end: an interrupted run leaves nothing.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.router_training.dataset import DatasetError, iter_jsonl, parse_request

GRADERS = ("exact", "numeric", "choice", "json_schema", "judge")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?")
_CHOICE = re.compile(r"\b([A-J])\b")
_JSON_BLOCK = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
JUDGE_PROMPT = (
    "You grade answers. Reference answer:\n{reference}\n\nCandidate answer:\n{answer}\n\n"
    "Does the candidate give the same final answer as the reference? Reply with exactly YES or NO."
)


@dataclass(frozen=True)
class Reference:
    """How to grade one prompt's answers."""

    grader: str
    answer: Any
    schema: dict | None = None
    tolerance: float = 1e-6
    judge: str | None = None


def load_references(path: str | Path) -> dict[str, Reference]:
    """Reference rows by id.

    Raises:
        DatasetError: naming the file and line of a bad row.
    """
    references: dict[str, Reference] = {}
    for number, obj in iter_jsonl(path):
        where = f"{path}:{number}"
        if "id" not in obj:
            raise DatasetError(f"{where}: a reference row needs `id`")
        grader = obj.get("grader", "exact")
        if grader not in GRADERS:
            raise DatasetError(f"{where}: `grader` must be one of {', '.join(GRADERS)}; got {grader!r}")
        if grader == "json_schema" and not isinstance(obj.get("schema"), dict):
            raise DatasetError(f"{where}: grader json_schema needs a `schema` object")
        if grader != "json_schema" and "answer" not in obj:
            raise DatasetError(f"{where}: grader {grader} needs `answer`")
        references[str(obj["id"])] = Reference(
            grader=grader,
            answer=obj.get("answer"),
            schema=obj.get("schema"),
            tolerance=float(obj.get("tolerance", 1e-6)),
            judge=obj.get("judge"),
        )
    return references


def grade(reference: Reference, answer: str, judge: Callable[[str], str] | None = None) -> float:
    """1.0 when `answer` is right by the reference's grader, else 0.0.

    Args:
        reference: the grader and expected answer.
        answer: the model's answer text.
        judge: sends a prompt to the judge size and returns its reply (grader `judge` only).
    """
    text = answer.strip()
    if reference.grader == "exact":
        want = str(reference.answer).strip().casefold()
        last = text.splitlines()[-1].strip().casefold() if text else ""
        return float(text.casefold() == want or last.endswith(want))
    if reference.grader == "numeric":
        numbers = _NUMBER.findall(text)
        if not numbers:
            return 0.0
        got, want = float(numbers[-1].replace(",", "")), float(reference.answer)
        return float(abs(got - want) <= reference.tolerance * max(1.0, abs(want)))
    if reference.grader == "choice":
        found = _CHOICE.search(text)
        return float(found is not None and found.group(1) == str(reference.answer).strip().upper())
    if reference.grader == "json_schema":
        import jsonschema

        block = _JSON_BLOCK.search(text)
        try:
            document = json.loads(block.group(1) if block else text)
            jsonschema.validate(document, reference.schema)
        except (ValueError, jsonschema.ValidationError):
            return 0.0
        return 1.0
    if judge is None:
        raise ValueError("grader judge needs a judge size")
    reply = judge(JUDGE_PROMPT.format(reference=reference.answer, answer=text))
    return float(reply.strip().upper().startswith("YES"))


class ApiClient:
    """The few calls the loop makes to an OpenAI-compatible server (httpx, synchronous).

    Args:
        base_url: the server root (`http://host:8000`, with or without `/v1`).
        api_key: sent as a bearer token when given.
        timeout_s: per-request timeout.
        transport: an httpx transport (tests); None uses the network.
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 120.0, transport=None):
        import httpx

        root = base_url.rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=root, headers=headers, timeout=timeout_s, transport=transport)

    def models(self) -> list[dict[str, Any]]:
        """The `/v1/models` cards."""
        response = self.client.get("/v1/models")
        response.raise_for_status()
        return list(response.json()["data"])

    def chat(self, model: str, messages: Sequence[Mapping[str, Any]], max_tokens: int) -> str:
        """The answer text of one non-streamed chat completion (thinking off: the answer is graded)."""
        response = self.client.post(
            "/v1/chat/completions",
            json={
                "model": model,
                "messages": list(messages),
                "max_tokens": max_tokens,
                "temperature": 0,
                "chat_template_kwargs": {"enable_thinking": False},
            },
        )
        response.raise_for_status()
        return response.json()["choices"][0]["message"].get("content") or ""

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def label(
    prompts: str | Path,
    references: str | Path,
    out: str | Path,
    client: ApiClient,
    *,
    max_tokens: int = 512,
    log: Callable[[str], None] = print,
) -> int:
    """Run, grade and write; returns the number of rows written.

    Raises:
        DatasetError: for a bad prompt or reference row (file and line named), or a prompt without
            a reference.
    """
    refs = load_references(references)
    cards = [c for c in client.models() if c.get("id") != "auto"]
    sizes = [(str(c.get("size") or c["id"]), str(c["id"])) for c in cards]
    if not sizes:
        raise DatasetError(f"{client.client.base_url} serves no model")
    if any(c.get("random_weights") for c in cards):
        log("NOTE: this server runs random-weight demo checkpoints: answers are noise, so these labels are too")
    jobs = []
    for number, obj in iter_jsonl(prompts):
        where = f"{prompts}:{number}"
        try:
            parse_request(obj)
        except ValueError as error:
            raise DatasetError(f"{where}: {error}") from None
        key = str(obj.get("id", ""))
        if key not in refs:
            raise DatasetError(f"{where}: no reference row with id {key!r} in {references}")
        messages = obj["messages"] if "messages" in obj else [{"role": "user", "content": obj["prompt"]}]
        jobs.append((obj, messages, refs[key]))
    judge_default = sizes[-1][1]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as sink:
            for index, (obj, messages, reference) in enumerate(jobs, start=1):
                judge_model = reference.judge or judge_default

                def judge(prompt: str, model: str = judge_model) -> str:
                    return client.chat(model, [{"role": "user", "content": prompt}], max_tokens=4)

                correct = {}
                for size, model in sizes:
                    answer = client.chat(model, messages, max_tokens)
                    correct[size] = grade(reference, answer, judge)
                row = {k: v for k, v in obj.items() if k not in ("correct", "split")}
                row["correct"] = correct
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                log(f"[{index}/{len(jobs)}] {obj.get('id')}: " + " ".join(f"{s}={int(c)}" for s, c in correct.items()))
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return len(jobs)
