"""The transformers engine alone on a batch job's kind of rows: image pages, all submitted at once.

    python bench/engine_images.py [--size 9b] [--rows 96] [--max-tokens 16] [--ref HEAD] [--rounds 2]

Each row is one page-sized picture (fitted to the engine's `image_max_pixels`, as the batch job's
preprocessing does) and "Describe this page", sampled with a per-row seed. The working tree's engine
and the engine at git `--ref` (the whole tree at that ref, exported to a temporary folder) run in
child processes on the same demo checkpoint, alternating `--rounds` times, so the ratio is same-run.
Prints rows/s and CPU seconds per round, then the median ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from git_tree import export_tree

ROOT = Path(__file__).resolve().parents[1]


def child(size: str, rows: int, max_tokens: int, cache_dir: str) -> dict:
    """Runs in the tree under test (its root is the working directory and first on sys.path)."""
    import asyncio

    sys.path.insert(0, str(Path.cwd()))
    from cluster.config import load_config
    from deployments.engines.base import ChatMessage, GenerationRequest, ImageInput, SamplingParams
    from deployments.engines.factory import create_engine
    from pipelines.imaging import fit_image
    from tests.support.sample_corpus import make_image

    config = load_config(profile="demo")
    model = next(m for m in config.models if m.size == size)
    engine = create_engine(model, Path(cache_dir))
    engine.load()
    pictures = [
        fit_image(
            make_image(1240, 1754, "PNG", seed),
            target_pixels=model.engine.image_max_pixels,
            max_pixels=40_000_000,
            image_format="JPEG",
        )
        for seed in range(8)
    ]

    def request(i: int) -> GenerationRequest:
        return GenerationRequest(
            request_id=f"page-{i}",
            sampling=SamplingParams(max_tokens=max_tokens, temperature=0.7, seed=i),
            messages=[ChatMessage("user", [ImageInput(pictures[i % 8]), "Describe this page."])],
        )

    async def one(i: int) -> int:
        deltas = [delta async for delta in engine.chat(request(i))]
        return deltas[-1].completion_tokens

    async def run() -> dict:
        await engine.start()
        await one(0)  # first-call costs out of the timing
        wall, cpu = time.perf_counter(), time.process_time()
        tokens = await asyncio.gather(*(one(i) for i in range(rows)))
        figures = {
            "rows_per_s": rows / (time.perf_counter() - wall),
            "cpu_s": time.process_time() - cpu,
            "tokens": sum(tokens),
        }
        await engine.shutdown()
        return figures

    return asyncio.run(run())


def run_child(tree: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--size", args.size]
    command += ["--rows", str(args.rows), "--max-tokens", str(args.max_tokens), "--cache-dir", args.cache_dir]
    done = subprocess.run(command, cwd=tree, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="9b")
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--ref", default="HEAD", help="git ref of the engine to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache-dir", help="demo checkpoint cache (default: the demo profile's)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.size, args.rows, args.max_tokens, args.cache_dir)))
        return
    sys.path.insert(0, str(ROOT))
    from cluster.config import load_config
    from deployments.engines.demo_models import ensure_demo_models

    config = load_config(profile="demo")
    args.cache_dir = args.cache_dir or str(config.cache_dir)
    ensure_demo_models(Path(args.cache_dir))
    ratios = []
    with tempfile.TemporaryDirectory(prefix="engine-images-") as tmp:
        baseline = export_tree(args.ref, Path(tmp))
        for round_ in range(args.rounds):
            order = [("working tree", ROOT), (args.ref, baseline)]
            if round_ % 2:
                order.reverse()
            figures = {name: run_child(tree, args) for name, tree in order}
            for name, result in figures.items():
                print(
                    f"round {round_ + 1} {name:>12}: {result['rows_per_s']:.2f} rows/s, "
                    f"{result['cpu_s']:.1f} CPU s, {result['tokens']} tokens",
                    flush=True,
                )
            ratios.append(figures["working tree"]["rows_per_s"] / figures[args.ref]["rows_per_s"])
    print(
        f"{args.size}, {args.rows} image rows x {args.max_tokens} tokens: working tree / {args.ref} "
        f"= {statistics.median(ratios):.2f}x rows/s (median of {len(ratios)}: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + ")"
    )


if __name__ == "__main__":
    main()
