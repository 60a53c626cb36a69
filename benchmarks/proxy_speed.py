"""Proxy evaluator measurements on this machine; prints one table per question.

    python -m benchmarks.proxy_speed [--seeds 2] [--repeats 5] [--skip-timing] [--skip-cache] [--skip-quality]

1. ms per training iteration and evaluations per hour, per config;
2. a step on cached features vs an end-to-end step (backbone forward every step), side by side;
3. achieved GFLOP/s of the proxy step vs this machine's matmul GFLOP/s;
4. feature-cache build time and size (fresh cache dir), peak RSS of one evaluation;
5. proxy mIOU of the zoo's ASPP and top-1 cells vs a deliberately weak cell.
Timings are medians over repeats, measured in one process so that ratios are side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dpc.zoo import zoo_cell
from proxy.backbone import build_backbone, preprocess
from proxy.config import PROXY_CONFIGS
from proxy.evaluator import ProxyEvaluator
from proxy.train import SegmentationHead


def median_ms(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def matmul_gflops(repeats: int) -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    ms = median_ms(lambda: a @ b, repeats * 4)
    return 2 * 1024**3 / (ms / 1e3) / 1e9


def make_step(model, params, x_fn, y, loss_size):
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

    def step():
        logits = model(x_fn())
        loss = F.cross_entropy(F.interpolate(logits, size=loss_size, mode="bilinear", align_corners=True), y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")


def step_costs(cfg_name: str, feature_hw: tuple[int, int], image_hw: tuple[int, int], repeats: int):
    """(ms per proxy step, FLOPs per proxy step) for the top-1 cell at a config's sizes.

    Step FLOPs = 3 x the forward FLOPs (backward ~ 2 x forward): torch's FLOP counter
    over-counts the backward of depthwise convolutions (it ignores groups there) by ~20x.
    """
    cfg = PROXY_CONFIGS[cfg_name]
    model = SegmentationHead(zoo_cell("top1"), 320, 11, cfg).train()
    x = torch.randn(cfg.batch_size, 320, *feature_hw)
    loss_hw = tuple((s - 1) // cfg.loss_stride + 1 for s in image_hw)
    y = torch.randint(0, 11, (cfg.batch_size, *loss_hw))
    step = make_step(model, model.parameters(), lambda: x, y, loss_hw)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return median_ms(step, repeats), 3 * counter.get_total_flops()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxy_speed")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per cell for the quality table")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-cache", action="store_true")
    parser.add_argument("--skip-timing", action="store_true", help="skip the step-time tables (1-3)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")

    if not args.skip_timing:
        timing_tables(args)
    cache_and_quality_tables(args)
    return 0


def timing_tables(args: argparse.Namespace) -> None:
    # 1 + 3: per config step time, evaluations per hour, achieved GFLOP/s
    mm = matmul_gflops(args.repeats)
    rows = []
    sizes = {"test": ((8, 8), (128, 128)), "cpu": ((33, 33), (513, 513)), "paper": ((33, 33), (513, 513))}
    for name, (fhw, ihw) in sizes.items():
        cfg = PROXY_CONFIGS[name]
        ms, flops = step_costs(name, fhw, ihw, args.repeats if name != "paper" else max(2, args.repeats // 2))
        total_s = ms * cfg.iterations / 1e3
        rows.append([name, cfg.channels, cfg.batch_size, f"{fhw[0]}x{fhw[1]}", f"{ms:.0f}", cfg.iterations,
                     f"{total_s:.1f}", f"{3600 / total_s:.0f}", f"{flops / 1e9:.2f}", f"{flops / (ms / 1e3) / 1e9:.1f}"])
    table("Proxy training step (top-1 cell, batch of cached features)",
          ["config", "channels", "batch", "features", "ms/iter", "iterations", "train s/eval", "evals/hour (train only)", "GFLOP/step (3x fwd)", "GFLOP/s"], rows)
    print(f"\nmatmul 1024x1024: {mm:.0f} GFLOP/s on this machine")

    # 2: cached vs end-to-end, side by side
    cfg = PROXY_CONFIGS["cpu"]
    backbone = build_backbone("lite0", 16).train()
    head = SegmentationHead(zoo_cell("top1"), 320, 11, cfg).train()
    images = torch.randint(0, 256, (cfg.batch_size, 3, 513, 513), dtype=torch.uint8)
    with torch.no_grad():
        feats = backbone.eval()(preprocess(images)).half()
    y = torch.randint(0, 11, (cfg.batch_size, 129, 129))
    cached = make_step(head, head.parameters(), lambda: feats.float(), y, (129, 129))

    def frozen_fwd():
        with torch.no_grad():
            return backbone.eval()(preprocess(images))

    e2e_frozen = make_step(head, head.parameters(), frozen_fwd, y, (129, 129))
    full = torch.nn.Sequential(backbone, head)
    e2e_train = make_step(full, full.parameters(), lambda: preprocess(images), y, (129, 129))
    r = max(2, args.repeats // 2)
    t_cached, t_frozen, t_train = median_ms(cached, r), median_ms(e2e_frozen, r), median_ms(e2e_train, r)
    table("Cached features vs end-to-end (cpu config, batch 8, 513x513 images, Lite0 OS16)",
          ["step", "ms/iter", "slow-down vs cached"],
          [["cached features (proxy)", f"{t_cached:.0f}", "1.0x"],
           ["backbone forward every step, frozen", f"{t_frozen:.0f}", f"{t_frozen / t_cached:.1f}x"],
           ["backbone forward+backward (fine-tuned)", f"{t_train:.0f}", f"{t_train / t_cached:.1f}x"]])


def cache_and_quality_tables(args: argparse.Namespace) -> None:
    # 4: cache build time and size; peak RSS of one evaluation (subprocess)
    if not args.skip_cache:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            ev = ProxyEvaluator("cpu", cache_dir=tmp).prepare()
            build_s = time.perf_counter() - t0
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp) for f in fs)
            n = len(ev._train) + len(ev._val)
            code = ("import json,time;from proxy.evaluator import ProxyEvaluator;from dpc.zoo import zoo_cell;"
                    f"e=ProxyEvaluator('cpu',cache_dir={tmp!r}).prepare();t=time.perf_counter();r=e.evaluate(zoo_cell('top1'));"
                    "hwm=[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1];"
                    "print(json.dumps({'s':time.perf_counter()-t,'rss':int(hwm)}))")
            # VmHWM, not ru_maxrss: the latter survives exec and would report this parent's peak
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            info = json.loads(out.stdout.strip().splitlines()[-1])
        table("Feature cache and memory (cpu config, embedded dataset)",
              ["images (train+val)", "build s (scenes + features)", "cache MB (scenes + features)", "one evaluation s", "peak RSS of an evaluation MB"],
              [[n, f"{build_s:.0f}", f"{size / 2**20:.0f}", f"{info['s']:.1f}", f"{info['rss'] / 1024:.0f}"]])

    # 5: the proxy separates good cells from a weak one
    if not args.skip_quality:
        ev = ProxyEvaluator("cpu").prepare()
        rows = []
        for name in ("aspp", "top1_cityscapes", "weak"):
            scores = [ev.evaluate(zoo_cell(name), seed=s).miou for s in range(args.seeds)]
            spread = f" ± {statistics.stdev(scores):.3f}" if len(scores) > 1 else ""
            rows.append([name, str(zoo_cell(name)), f"{statistics.mean(scores):.3f}{spread}", ", ".join(f"{v:.3f}" for v in scores)])
        table(f"Proxy mIOU, cpu config ({args.seeds} seeds)", ["cell", "genome", "mean mIOU", "per seed"], rows)


if __name__ == "__main__":
    sys.exit(main())
