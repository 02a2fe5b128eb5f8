"""Tokenizing a chat prompt through the transformers wrapper against the Rust backend's own call,
alone and while another Python thread holds the GIL (as the decode loop and the event loop do in a
replica). Prints microseconds per call.

    python bench/tokenize_under_load.py [--calls 2000]

Uses the 0.8b demo checkpoint's tokenizer (generated offline under QWEN_CLUSTER_CACHE if missing).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def spin(stop: threading.Event, ticks: list[int]) -> None:
    """Hold the GIL in pure Python until `stop` is set, counting loop turns in `ticks[0]`."""
    while not stop.is_set():
        ticks[0] += 1


def per_call_us(call, calls: int) -> float:
    """Mean wall-clock microseconds of `call()`."""
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from cluster.config import default_cache_dir
    from deployments.engines.demo_models import ensure_demo_models
    from deployments.engines.prompting import PromptBuilder

    paths = ensure_demo_models(default_cache_dir(), ["0.8b"])
    tokenizer = AutoTokenizer.from_pretrained(paths["0.8b"])
    builder = PromptBuilder(tokenizer, SimpleNamespace(merge_size=2), max_images=1, max_decoded_pixels=10)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Give me a short greeting."}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    wrapper = lambda: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    backend = lambda: builder.encode(text)  # noqa: E731
    assert wrapper() == backend()
    print(f"{len(backend())}-token chat prompt, {args.calls} calls each, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for busy in (False, True):
        stop = threading.Event()

        spinner = threading.Thread(target=spin, args=(stop, [0]), daemon=True)
        if busy:
            spinner.start()
        try:
            # The busy case costs a switch interval per wrapper call: fewer calls keep it short.
            calls = args.calls // 20 if busy else args.calls
            slow, fast = per_call_us(wrapper, calls), per_call_us(backend, calls)
        finally:
            stop.set()
            if busy:
                spinner.join()
        label = "another thread busy" if busy else "alone"
        print(f"{label:<20} wrapper {slow:8.1f} us   backend {fast:8.1f} us   ratio {slow / fast:6.1f}x")
    # A long prompt: the backend's single-text call holds the GIL while it works, the wrapper's batch
    # call lets other threads run (why PromptBuilder.encode sends long texts to the wrapper).
    long_text = ("The council met on Tuesday to discuss the new bridge and its costs. " * 4000)[:250_000]
    ticks = [0]
    stop = threading.Event()
    counter = threading.Thread(target=spin, args=(stop, ticks), daemon=True)
    counter.start()
    try:
        for name, call in (
            ("wrapper", lambda: tokenizer(long_text, add_special_tokens=False)),
            ("backend", lambda: builder._backend.encode(long_text, add_special_tokens=False)),
        ):
            before, started = ticks[0], time.perf_counter()
            call()
            elapsed = time.perf_counter() - started
            print(f"250,000 characters, {name}: {elapsed * 1e3:6.1f} ms, another thread's loop ran {ticks[0] - before:,} times")
    finally:
        stop.set()
        counter.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
