"""Router scoring latency on CPU: `python bench/router_bench.py [--iterations N] [--scorers ...]`.

For prompts of about 20, 500 and 5,000 tokens (estimated as the feature scorer does, ~4 characters a
token), each with and without one image, times `Router.route` (reduce the messages, score, apply the
policy) with `time.perf_counter` and prints p50 / p99 per scorer. Every call routes a different
prompt (a counter is prepended), so nothing can be served from a cache. Goals: feature scorer p50
under 1 ms, learned scorer p50 under 15 ms at 500 tokens. The embedding model runs with one torch
thread by default, as it does in the ingress replica.

`auto` overhead (`--overhead`): in-process, the ingress's choosing step for a 500-token chat request,
`Dispatcher.choose` plus the response headers (`OpenAIService._headers`), with `model: auto` against
`model: qwen3.5-0.8b` (the generation itself is the same work either way, so it is left out); the
difference of the two p50s is the overhead. `--repeats N` runs everything N times and prints the
best and the median of each p50, since the machine is shared.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.catalog import SIZES  # noqa: E402
from cluster.router_config import RouterConfig  # noqa: E402
from deployments.engines.base import ChatMessage, ImageInput  # noqa: E402
from deployments.router.features import estimate_tokens  # noqa: E402
from deployments.router.router import Router, build_router  # noqa: E402

TOKEN_TARGETS = (20, 500, 5000)
SCORERS = ("features", "learned", "blend")
_WORDS = [
    "the",
    "report",
    "shows",
    "revenue",
    "grew",
    "while",
    "margins",
    "fell",
    "because",
    "costs",
    "rose",
    "faster",
    "than",
    "prices",
    "in",
    "most",
    "regions",
    "and",
    "management",
    "plans",
    "to",
    "open",
    "new",
    "sites",
    "next",
    "year;",
    "explain",
    "the",
    "risks",
    "and",
    "compare",
    "the",
    "options",
    "step",
    "by",
    "step",
    "using",
    "the",
    "numbers",
    "12",
    "45",
    "7.5",
    "and",
    "300",
    "where",
    "they",
    "matter",
    "for",
    "the",
    "final",
    "recommendation",
]


def make_text(tokens: int) -> str:
    """English-like text whose estimated token count is about `tokens`."""
    words: list[str] = []
    index = 0
    while estimate_tokens(" ".join(words)) < tokens:
        words.append(_WORDS[index % len(_WORDS)])
        index += 1
    return " ".join(words)


def tiny_png() -> bytes:
    """A real 64x64 PNG, so image-bearing requests look like the ingress's."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def time_route(router: Router, text: str, image: bytes | None, iterations: int, warmup: int) -> list[float]:
    """Seconds per `route` call, one distinct prompt per call."""
    timings = []
    for index in range(warmup + iterations):
        content: list[str | ImageInput] = [f"[{index}] {text}"]
        if image is not None:
            content.append(ImageInput(data=image, source="bench"))
        messages = [ChatMessage(role="user", content=content)]
        start = time.perf_counter()
        router.route(messages)
        elapsed = time.perf_counter() - start
        if index >= warmup:
            timings.append(elapsed)
    return timings


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def run(
    scorers: tuple[str, ...], iterations: dict[str, int], warmup: int, artifact: str | None = None
) -> list[dict[str, object]]:
    """Time every scorer on every prompt shape; returns one row per (scorer, tokens, image)."""
    texts = {tokens: make_text(tokens) for tokens in TOKEN_TARGETS}
    image = tiny_png()
    rows = []
    for scorer in scorers:
        started = time.perf_counter()
        router = build_router(RouterConfig(enabled=True, scorer=scorer, artifact_path=artifact), SIZES)
        build_s = time.perf_counter() - started
        for tokens, text in texts.items():
            for with_image in (False, True):
                timings = time_route(router, text, image if with_image else None, iterations[scorer], warmup)
                rows.append(
                    {
                        "scorer": scorer,
                        "tokens": tokens,
                        "image": with_image,
                        "n": len(timings),
                        "p50_ms": percentile(timings, 0.50) * 1000,
                        "p99_ms": percentile(timings, 0.99) * 1000,
                        "mean_ms": statistics.fmean(timings) * 1000,
                        "build_s": build_s,
                    }
                )
    return rows


def time_choose(scorer: str, iterations: int, warmup: int, artifact: str | None = None) -> dict[str, float]:
    """p50 seconds of the ingress's choosing step (choose + headers), `auto` and a named size."""
    from types import SimpleNamespace

    from cluster.config import load_config
    from deployments.openai.capacity import CapacityTracker
    from deployments.openai.dispatch import Dispatcher
    from deployments.openai.service import OpenAIService

    config = load_config(profile="demo")
    update = {"scorer": scorer, "artifact_path": artifact}
    config = config.model_copy(update={"router": config.router.model_copy(update=update)})
    sizes = [m.size for m in config.enabled_models()]
    dispatcher = Dispatcher(config, {}, build_router(config.router, sizes), CapacityTracker(config))
    service = SimpleNamespace(config=config)
    named = next(m.public_name for m in config.enabled_models() if m.size == SIZES[0])
    text = make_text(500)
    out = {}
    for model in ("auto", named):
        timings = []
        for index in range(warmup + iterations):
            messages = [ChatMessage(role="user", content=[f"[{index}] {text}"])]
            start = time.perf_counter()
            route = dispatcher.choose(model, messages=messages)
            OpenAIService._headers(service, route.routing)
            elapsed = time.perf_counter() - start
            if index >= warmup:
                timings.append(elapsed)
        out["auto" if model == "auto" else "named"] = percentile(timings, 0.50)
    return out


def summarise(runs: list[dict[str, float]]) -> str:
    """`best / median` of each key over repeated runs, in ms."""
    keys = runs[0].keys()
    return ", ".join(
        f"{k} best {min(r[k] for r in runs) * 1000:.3f} ms / median {statistics.median(r[k] for r in runs) * 1000:.3f} ms"
        for k in keys
    )


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scorers", default=",".join(SCORERS), help="comma-separated: features,learned,blend"
    )
    parser.add_argument(
        "--iterations", type=int, default=None, help="calls per case (default 2000 features, 200 others)"
    )
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per case first")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for the embedding model (default 1, as in the ingress: Ray sets "
        "OMP_NUM_THREADS to an actor's whole CPUs, at least 1); 0 keeps torch's default",
    )
    parser.add_argument("--repeats", type=int, default=1, help="run everything this many times")
    parser.add_argument(
        "--artifact",
        action="append",
        default=None,
        help="learned artifact to time (repeatable: each is timed in turn, every repeat, so two "
        "artifacts compare in the same run); default: the packaged one",
    )
    parser.add_argument(
        "--overhead", action="store_true", help="also time `auto` against a named size (choose + headers)"
    )
    args = parser.parse_args(argv)
    scorers = tuple(s for s in args.scorers.split(",") if s)
    unknown = set(scorers) - set(SCORERS)
    if unknown:
        parser.error(f"unknown scorers {sorted(unknown)}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    iterations = {s: args.iterations or (2000 if s == "features" else 200) for s in scorers}
    artifacts: list[str | None] = list(args.artifact or [None])

    def label(scorer: str, artifact: str | None) -> str:
        return scorer if artifact is None or scorer == "features" else f"{scorer}@{Path(artifact).name}"

    cases = [(s, a) for a in artifacts for s in scorers if a is artifacts[0] or s != "features"]
    repeats: list[list[dict[str, object]]] = []
    loads: list[float] = []
    overheads: dict[str, list[dict[str, float]]] = {label(s, a): [] for s, a in cases}
    for _ in range(max(1, args.repeats)):
        rows = []
        for scorer, artifact in cases:
            for row in run((scorer,), iterations, args.warmup, artifact):
                rows.append({**row, "scorer": label(scorer, artifact)})
            if args.overhead:
                overheads[label(scorer, artifact)].append(
                    time_choose(scorer, iterations[scorer], args.warmup, artifact)
                )
        repeats.append(rows)
        loads.append(os.getloadavg()[0])
    rows = repeats[-1]
    labels = [label(s, a) for s, a in cases]
    threads = "n/a"
    if any(s != "features" for s in scorers):
        import torch

        threads = str(torch.get_num_threads())
    print(
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads: {threads}, "
        f"load average after the run: {os.getloadavg()[0]:.2f}"
    )
    width = max(9, *(len(name) for name in labels))
    print(f"{'scorer':<{width}} {'tokens':>6} {'image':>5} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for row in rows:
        print(
            f"{row['scorer']:<{width}} {row['tokens']:>6} {'yes' if row['image'] else 'no':>5} {row['n']:>5} "
            f"{row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} {row['mean_ms']:>8.3f}"
        )
    for name in labels:
        build_s = next(r["build_s"] for r in rows if r["scorer"] == name)
        print(f"router construction with scorer {name}: {build_s:.2f} s")
    print(f"{len(repeats)} run(s); load average (1 min) after each: {', '.join(f'{x:.1f}' for x in loads)}")
    for name in labels:
        for tokens in TOKEN_TARGETS:
            p50s = [
                {"p50": next(r["p50_ms"] for r in rows if r["scorer"] == name and r["tokens"] == tokens and not r["image"]) / 1000}
                for rows in repeats
            ]
            print(f"{name} {tokens} tokens, no image, p50 over runs: {summarise(p50s)}")
        if overheads[name]:
            runs = overheads[name]
            diff = [{"auto_minus_named": r["auto"] - r["named"]} for r in runs]
            print(f"{name} choose+headers at 500 tokens: {summarise(runs)}; {summarise(diff)}")


if __name__ == "__main__":
    main()
