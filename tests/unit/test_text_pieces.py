"""Detokenizer stop handling and the reasoning splitter: the pieces that shape streamed text."""

import pytest

from deployments.engines.detokenizer import IncrementalDetokenizer
from deployments.openai.reasoning import ReasoningSplitter

pytestmark = pytest.mark.unit

# A toy vocabulary: each id decodes to a fixed string, so decoding is concatenation.
VOCAB = {1: "Hel", 2: "lo", 3: " wor", 4: "ld", 5: "ST", 6: "OP", 7: "!", 8: "\ufffd"}


def decode(ids):
    return "".join(VOCAB[i] for i in ids)


def run(ids, stop=()):
    detok = IncrementalDetokenizer(decode, stop)
    pieces = []
    for token in ids:
        pieces.append(detok.add(token))
        if detok.stopped:
            break
    pieces.append(detok.flush())
    return pieces, detok


def test_plain_streaming_concatenates():
    pieces, detok = run([1, 2, 3, 4])
    assert "".join(pieces) == "Hello world" and not detok.stopped
    assert detok.token_count == 4


def test_stop_string_cut_and_never_partially_emitted():
    pieces, detok = run([1, 2, 5, 6, 3], stop=["STOP"])
    assert detok.stopped
    assert "".join(pieces) == "Hello"
    assert all("S" not in p for p in pieces)


def test_partial_stop_prefix_is_released_when_not_a_stop():
    pieces, detok = run([1, 5, 7], stop=["STOP"])
    assert "".join(pieces) == "HelST!"
    assert pieces[1] == ""  # "ST" was held while it could still become "STOP"


def test_incomplete_utf8_held_back():
    detok = IncrementalDetokenizer(decode)
    assert detok.add(1) == "Hel"
    assert detok.add(8) == ""


def test_reasoning_split_across_deltas():
    splitter = ReasoningSplitter(thinking=True)
    outputs = [splitter.feed(t) for t in ["I think", " hard</th", "ink>\n\nThe answer", " is 4"]]
    outputs.append(splitter.flush())
    reasoning = "".join(r for r, _ in outputs)
    content = "".join(c for _, c in outputs)
    assert reasoning == "I think hard"
    assert content == "The answer is 4"


def test_reasoning_off_passes_everything_as_content():
    splitter = ReasoningSplitter(thinking=False)
    assert splitter.feed("</think>x") == ("", "</think>x")


def test_unfinished_thinking_is_all_reasoning():
    splitter = ReasoningSplitter(thinking=True)
    assert splitter.feed("still thinking </") == ("still thinking ", "")
    assert splitter.flush() == ("</", "")
