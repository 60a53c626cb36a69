"""``python -m proxy.evaluate CELL``: score one cell and print the result table.

``python -m proxy.evaluate --head package.module:factory`` scores a head that is not a DPC
genome: ``factory(in_channels)`` returns an ``nn.Module`` giving the config's
``concat_channels`` channels at the feature size (``proxy.head``).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import math
import sys

from .config import FULL_CONFIGS, PROXY_CONFIGS
from .errors import EvaluationError


def format_result(result, class_names: list[str], head_name: str | None = None) -> str:
    first = f"cell          {result.genome}" if result.genome is not None else f"head          {head_name or '(not a genome)'}"
    test = "n/a (no test split)" if result.test_miou is None else f"{result.test_miou:.4f}"
    lines = [
        first,
        f"val mIOU      {result.miou:.4f}   (the search signal; {result.config} config {result.config_hash}, seed {result.seed}, "
        f"{result.iterations} iterations)",
        f"test mIOU     {test}   (reporting only: no search sees it)",
        f"params        {result.params:,}",
        f"FLOPs         {result.flops:,} per image",
        f"train / eval  {result.train_seconds:.1f} s / {result.eval_seconds:.1f} s on {result.device}",
        "val IoU       " + _per_class(class_names, result.per_class_iou),
    ]
    if result.test_per_class_iou is not None:
        lines.append("test IoU      " + _per_class(class_names, result.test_per_class_iou))
    return "\n".join(lines)


def _per_class(class_names: list[str], values: list[float]) -> str:
    return "  ".join(f"{name}={'n/a' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.3f}'}"
                     for name, v in zip(class_names, values))


def load_factory(spec: str):
    """``package.module:attr`` -> the head factory it names; ValueError (one line) otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--head wants package.module:factory, got {spec!r}")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"--head: cannot import {module_name!r}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"--head: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    from torch import nn

    if not callable(obj) or isinstance(obj, nn.Module):  # a built module is callable, but not a factory
        raise ValueError(f"--head: {spec!r} is a {type(obj).__name__}, not a factory in_channels -> nn.Module")
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.evaluate", description="Evaluate one DPC cell (or any head) on the proxy (or full) task.")
    parser.add_argument("cell", nargs="?", help="zoo name (aspp, top1, weak), genome string, JSON text or JSON file")
    parser.add_argument("--head", default=None, metavar="MODULE:FACTORY",
                        help="instead of a cell: a factory in_channels -> nn.Module giving the config's concat_channels channels")
    parser.add_argument("--config", default=None, help=f"proxy config: {', '.join(PROXY_CONFIGS)} (default cpu, on GPUs too)")
    parser.add_argument("--full", action="store_true", help=f"use the full-task evaluator (configs {', '.join(FULL_CONFIGS)})")
    parser.add_argument("--dataset", default=None, help="scenes[:PRESET] (default), voc:PATH or cityscapes:PATH")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--cache-dir", default=None, help="dataset and feature cache (default: $DPC_NAS_CACHE or ~/.cache/dpc-nas)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available)")
    args = parser.parse_args(argv)
    if (args.cell is None) == (args.head is None):
        parser.error("give either a CELL or --head MODULE:FACTORY")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.head is not None:
            head = load_factory(args.head)
        else:
            from dpc.zoo import load_cell

            head = load_cell(args.cell)
        if args.full:
            from .full import full_evaluator as Evaluator
        else:
            from .evaluator import ProxyEvaluator as Evaluator
        evaluator = Evaluator(args.config, cache_dir=args.cache_dir, device=args.device, dataset=args.dataset)
        evaluator.prepare()
        result = evaluator.evaluate(head, seed=args.seed)
    except EvaluationError as e:
        print(f"evaluation failed: {e.reason}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_result(result, evaluator.class_names, args.head))
    return 0


if __name__ == "__main__":
    sys.exit(main())
