"""The incremental detokenizer decodes a bounded window per token (constant work)."""

import pytest

from deployments.engines.detokenizer import IncrementalDetokenizer

pytestmark = pytest.mark.unit

VOCAB = {1: "ab", 2: " c", 3: "STOP", 4: "\ufffd"}


def test_work_per_token_does_not_grow_with_output():
    seen: list[int] = []

    def decode(ids):
        seen.append(len(ids))
        return "".join(VOCAB[i] for i in ids)

    detok = IncrementalDetokenizer(decode, ["STOP"])
    text = "".join(detok.add(1 if i % 2 else 2) for i in range(2000)) + detok.flush()
    assert text == "".join(VOCAB[1 if i % 2 else 2] for i in range(2000))
    assert max(seen) <= 13
    assert len(seen) <= 2000 * 1.2  # about one decode per token


def test_stop_string_after_a_long_output():
    decode = lambda ids: "".join(VOCAB[i] for i in ids)  # noqa: E731
    detok = IncrementalDetokenizer(decode, ["STOP"])
    pieces = [detok.add(1) for _ in range(300)] + [detok.add(3), detok.add(1)]
    assert detok.stopped and "".join(pieces) == "ab" * 300
