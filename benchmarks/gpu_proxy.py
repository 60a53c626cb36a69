"""Candidates per hour of the `paper` proxy config on a GPU (the paper: ~90 min per candidate
on one 2018 GPU, i.e. ~0.7 an hour).

    python -m benchmarks.gpu_proxy [--cells 4] [--config paper] [--iterations N] [--seeds 1]

Builds (or loads) the feature cache on the GPU, evaluates the zoo's ASPP, top-1 and weak
(five 1x1) cells and a few random ones, and prints one row per (cell, seed) plus
candidates/hour. Exits with a one-line message where no CUDA device is present.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from dpc.mutation import sample_genome
from dpc.zoo import zoo_cell
from proxy.config import get_config
from proxy.evaluator import ProxyEvaluator

PAPER_MINUTES_PER_CANDIDATE = 90.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_proxy")
    parser.add_argument("--cells", type=int, default=4, help="random cells besides the zoo's ASPP, top-1 and weak")
    parser.add_argument("--config", default="paper")
    parser.add_argument("--iterations", type=int, default=None, help="override the config's iterations")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per zoo cell (random cells get one)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU (the CPU numbers come from benchmarks.proxy_speed)", file=sys.stderr)
        return 2
    cfg = get_config(args.config)
    if args.iterations:
        cfg = cfg.replace(iterations=args.iterations)
    t0 = time.perf_counter()
    ev = ProxyEvaluator(cfg, device="cuda").prepare()
    prep = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    cells = [(name, zoo_cell(name), seed) for name in ("aspp", "top1", "weak") for seed in range(args.seeds)]
    cells += [(f"random{i}", sample_genome(rng), 0) for i in range(args.cells)]
    print(f"device {torch.cuda.get_device_name()}, config {cfg.name} ({cfg.channels} channels, {cfg.iterations} iterations, "
          f"batch {cfg.batch_size}), cache ready in {prep:.0f} s\n")
    print("| cell | seed | mIOU | train s | eval s | ms/iter |\n|---|---|---|---|---|---|")
    totals = []
    for name, g, seed in cells:
        torch.cuda.synchronize()
        t = time.perf_counter()
        r = ev.evaluate(g, seed=seed)
        torch.cuda.synchronize()
        totals.append(time.perf_counter() - t)
        print(f"| {name} | {seed} | {r.miou:.3f} | {r.train_seconds:.1f} | {r.eval_seconds:.1f} | {1e3 * r.train_seconds / r.iterations:.1f} |")
    per = statistics.median(totals)
    print(f"\nmedian {per:.1f} s per candidate: {3600 / per:.0f} candidates/hour "
          f"(the paper: {PAPER_MINUTES_PER_CANDIDATE:.0f} min, {60 / PAPER_MINUTES_PER_CANDIDATE:.2f}/hour; "
          f"per iteration, scaled to its 30k: {per / cfg.iterations * 30000 / 60:.0f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
