"""``python -m proxy.evaluate CELL``: score one cell and print the result table."""
from __future__ import annotations

import argparse
import logging
import math
import sys

from .config import FULL_CONFIGS, PROXY_CONFIGS
from .errors import EvaluationError


def format_result(result, class_names: list[str]) -> str:
    lines = [
        f"cell          {result.genome}",
        f"mIOU          {result.miou:.4f}   ({result.config} config {result.config_hash}, seed {result.seed}, {result.iterations} iterations)",
        f"params        {result.params:,}",
        f"FLOPs         {result.flops:,} per image",
        f"train / eval  {result.train_seconds:.1f} s / {result.eval_seconds:.1f} s on {result.device}",
        "per-class IoU " + "  ".join(
            f"{name}={'n/a' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.3f}'}"
            for name, v in zip(class_names, result.per_class_iou)
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.evaluate", description="Evaluate one DPC cell on the proxy (or full) task.")
    parser.add_argument("cell", help="zoo name (aspp, top1, weak), genome string, JSON text or JSON file")
    parser.add_argument("--config", default=None, help=f"proxy config: {', '.join(PROXY_CONFIGS)} (default: paper on a GPU, else cpu)")
    parser.add_argument("--full", action="store_true", help=f"use the full-task evaluator (configs {', '.join(FULL_CONFIGS)})")
    parser.add_argument("--dataset", default=None, help="scenes[:PRESET] (default), voc:PATH or cityscapes:PATH")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--cache-dir", default=None, help="dataset and feature cache (default: $DPC_NAS_CACHE or ~/.cache/dpc-nas)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from dpc.zoo import load_cell

        genome = load_cell(args.cell)
        if args.full:
            from .full import FullEvaluator as Evaluator
        else:
            from .evaluator import ProxyEvaluator as Evaluator
        evaluator = Evaluator(args.config, cache_dir=args.cache_dir, device=args.device, dataset=args.dataset)
        evaluator.prepare()
        result = evaluator.evaluate(genome, seed=args.seed)
    except EvaluationError as e:
        print(f"evaluation failed: {e.reason}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_result(result, evaluator.class_names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
