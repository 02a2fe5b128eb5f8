"""bfloat16 linear layers packed once for oneDNN against `nn.Linear`, on one model in one process.

    python bench/packed_linear.py [--checkpoint realsize|demo] [--rows 1,4,16,32] [--pairs 3]
                                  [--prompt-tokens 24] [--steps 8] [--threads 1]

Loads the checkpoint twice in bfloat16 on the CPU, as the transformers engine does (its linear-attention
functions installed, subnormal floats flushed, `--threads` torch threads), packs one copy's linear
layers (deployments/engines/packed_linear.py) and keeps the other as transformers builds it. For each
row count it then times, alternating the two copies `--pairs` times so the machine's drift falls on
both: one prefill forward of `rows` prompts of `--prompt-tokens` tokens, then `--steps` one-token
decode steps (median). Prints both copies' figures per pair, the packed/plain speed ratio of each
pair and the median ratio, and checks that both copies produced the same greedy tokens.
`realsize` is the random-weight checkpoint with the real Qwen3.5-0.8B dimensions
(bench/realsize_checkpoint.py); `demo` is the tiny demo 0.8b, where per-layer overhead dominates.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load(path: Path, packed: bool):
    import torch
    from transformers import Qwen3_5ForConditionalGeneration

    from deployments.engines.packed_linear import pack_linear_layers

    model = Qwen3_5ForConditionalGeneration.from_pretrained(path, dtype=torch.bfloat16).eval()
    count = pack_linear_layers(model) if packed else 0
    return model, count


def timed_pass(model, rows: int, prompt_tokens: int, steps: int, seed: int) -> tuple[float, float, list]:
    """(prefill ms, median decode-step ms, greedy tokens) for `rows` random prompts."""
    import torch
    from transformers import DynamicCache

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 10_000, (rows, prompt_tokens), generator=generator)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        started = time.perf_counter()
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        prefill_ms = (time.perf_counter() - started) * 1e3
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        tokens, step_ms = [token], []
        for _ in range(steps):
            started = time.perf_counter()
            out = model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1)
            step_ms.append((time.perf_counter() - started) * 1e3)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(token)
    return prefill_ms, statistics.median(step_ms), torch.cat(tokens, dim=1).tolist()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", choices=("realsize", "demo"), default="realsize")
    parser.add_argument("--rows", default="1,4,16,32", help="batch rows, comma-separated")
    parser.add_argument("--pairs", type=int, default=3, help="alternating plain/packed pairs per row count")
    parser.add_argument("--prompt-tokens", type=int, default=24)
    parser.add_argument("--steps", type=int, default=8, help="decode steps timed per pass (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the engine's default: 1)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    import torch

    from deployments.engines import linear_attention
    from deployments.engines.packed_linear import packing_available

    if not packing_available():
        print("this PyTorch build or CPU cannot pack bfloat16 linear weights for oneDNN")
        return 1
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    linear_attention.install()
    if args.checkpoint == "realsize":
        from realsize_checkpoint import default_path, ensure_realsize_checkpoint

        path = ensure_realsize_checkpoint(default_path())
    else:
        from cluster.config import default_cache_dir
        from deployments.engines.demo_models import ensure_demo_models

        path = ensure_demo_models(default_cache_dir(), sizes=["0.8b"])["0.8b"]
    plain, _ = load(path, packed=False)
    packed, count = load(path, packed=True)
    print(f"{path.name}: {count} linear layers packed; {args.threads} torch thread(s); "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'rows':>4} {'pair':>4} {'prefill ms plain/packed':>24} {'decode step ms plain/packed':>28}"
          f" {'prefill x':>9} {'decode x':>8}")
    for rows in [int(r) for r in args.rows.split(",") if r.strip()]:
        timed_pass(plain, rows, args.prompt_tokens, 2, 0)  # warm both copies at this shape
        timed_pass(packed, rows, args.prompt_tokens, 2, 0)
        prefill_ratios, decode_ratios, same = [], [], True
        for pair in range(args.pairs):
            order = (plain, packed) if pair % 2 == 0 else (packed, plain)
            results = {id(model): timed_pass(model, rows, args.prompt_tokens, args.steps, pair) for model in order}
            base, fast = results[id(plain)], results[id(packed)]
            same = same and base[2] == fast[2]
            prefill_ratios.append(base[0] / fast[0])
            decode_ratios.append(base[1] / fast[1])
            print(f"{rows:>4} {pair + 1:>4} {base[0]:>11.1f} / {fast[0]:<10.1f} {base[1]:>13.1f} / {fast[1]:<12.1f}"
                  f" {prefill_ratios[-1]:>8.2f}x {decode_ratios[-1]:>7.2f}x")
        print(f"{rows:>4}  med {'':>24} {'':>28} {statistics.median(prefill_ratios):>8.2f}x"
              f" {statistics.median(decode_ratios):>7.2f}x  same greedy tokens: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
