"""Proxy evaluator measurements on this machine; prints one table per question.

    python -m benchmarks.proxy_speed [--seeds 2] [--repeats 5] [--skip-timing] [--skip-cache] [--skip-quality]
                                     [--cells 12] [--steps 30] [--skip-cells-per-hour] [--threads N]
    python -m benchmarks.proxy_speed --quick [--cells 4] [--steps 10]

0. evaluations per hour of a fixed sample of uniform random cells (``sample_genome`` with seed
   2026), reference kernels (the ``nn`` ops) vs fast (``dpc.kernels``), both in one run with their
   training steps taking turns. The estimate is ``cfg.iterations`` (600) x the median of
   ``--steps`` timed training steps (after 2 warm-up steps) + one eval pass over 500 images'
   features (val 100 + test 400): not a full evaluation, but every part of one, on synthetic
   features and labels of the real shapes (cached features would take long to build).
   ``--quick`` prints only this table, ending with ``random cells per hour: N (reference ops: M)``;
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
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.op_cost import MODES, load_note, make_train_step, paired_ms, table, under
from dpc import kernels
from dpc.genome import Genome
from dpc.mutation import sample_genome
from dpc.zoo import zoo_cell
from proxy.backbone import build_backbone, preprocess
from proxy.config import PROXY_CONFIGS, EvalConfig
from proxy.evaluator import ProxyEvaluator
from proxy.train import SegmentationHead, Split, evaluate_miou

NUM_CLASSES = 11


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


# -- 0: evaluations per hour of random cells, reference vs fast kernels ------------------------------
@dataclass(frozen=True)
class Sizes:
    """The stored data of a proxy evaluation: features (channels, side), labels' side, split sizes."""

    channels: int = 320
    feature: int = 33
    image: int = 513
    train: int = 64  # a pool the timed steps draw batches from (the real train split has 1,600)
    val: int = 100
    test: int = 400


def synthetic_splits(sizes: Sizes, seed: int = 0) -> tuple[Split, Split, Split]:
    """train, val, test: random fp16 features (cast to float per batch, as the cache's) and uint8 labels."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        x = torch.randn(n, sizes.channels, sizes.feature, sizes.feature, generator=g, dtype=torch.float16)
        y = torch.randint(0, NUM_CLASSES, (n, sizes.image, sizes.image), generator=g, dtype=torch.uint8)
        return Split(x, y)

    return split(sizes.train), split(sizes.val), split(sizes.test)


def batches(train: Split, cfg: EvalConfig, seed: int = 0):
    """Random batches as ``proxy.train`` draws them: index_select, labels subsampled by loss_stride."""
    rng = np.random.default_rng(seed)
    s = cfg.loss_stride

    def next_batch():
        index = torch.from_numpy(rng.choice(len(train), cfg.batch_size, replace=False))
        return train.inputs.index_select(0, index), train.labels.index_select(0, index)[:, ::s, ::s]

    return next_batch


@dataclass
class CellTiming:
    genome: Genome
    step_ms: dict[str, float]  # median training step, per kernel set
    eval_s: dict[str, float]  # one eval pass over val + test, per kernel set

    def seconds(self, mode: str, iterations: int) -> float:
        return iterations * self.step_ms[mode] / 1e3 + self.eval_s[mode]


def eval_seconds(model: torch.nn.Module, splits: list[Split], cfg: EvalConfig, mode: str) -> float:
    with kernels.using(mode):
        t0 = time.perf_counter()
        for split in splits:
            evaluate_miou(model, split, NUM_CLASSES, cfg)
        return time.perf_counter() - t0


def time_cell(genome: Genome, cfg: EvalConfig, splits: tuple[Split, Split, Split], steps: int) -> CellTiming:
    """Both kernel sets on the same initial weights and batches, their steps taking turns."""
    models, step_fns = {}, {}
    for mode in MODES:
        torch.manual_seed(0)
        models[mode] = SegmentationHead(genome, splits[0].inputs.shape[1], NUM_CLASSES, cfg).train()
        step_fns[mode] = under(mode, make_train_step(models[mode], cfg, batches(splits[0], cfg)))
    step_ms = paired_ms(step_fns, steps, warmup=2)
    return CellTiming(genome, step_ms, {m: eval_seconds(models[m], list(splits[1:]), cfg, m) for m in MODES})


def cells_per_hour(timings: list[CellTiming], mode: str, iterations: int) -> float:
    return 3600 / statistics.mean(t.seconds(mode, iterations) for t in timings)


def random_cells(n: int, seed: int = 2026) -> list[Genome]:
    rng = np.random.default_rng(seed)
    return [sample_genome(rng, 5) for _ in range(n)]


def cells_per_hour_table(n_cells: int, steps: int, cfg_name: str = "cpu") -> None:
    cfg = PROXY_CONFIGS[cfg_name]
    splits = synthetic_splits(Sizes())
    timings = [time_cell(g, cfg, splits, steps) for g in random_cells(n_cells)]
    n = cfg.iterations
    rows = [[str(t.genome), f"{t.step_ms['fast']:.0f}", f"{t.step_ms['reference']:.0f}", f"{t.eval_s['fast']:.1f}",
             f"{t.eval_s['reference']:.1f}", f"{t.seconds('fast', n):.0f}", f"{t.seconds('reference', n):.0f}",
             f"{t.seconds('reference', n) / t.seconds('fast', n):.2f}"] for t in timings]
    table(f"Evaluations of random cells ({cfg_name} config: {n} steps x median of {steps} + one eval pass over "
          f"{len(splits[1]) + len(splits[2])} images; synthetic features)",
          ["cell", "fast ms/step", "reference ms/step", "fast eval s", "reference eval s", "fast s/eval",
           "reference s/eval", "speed-up"], rows)
    fast, ref = cells_per_hour(timings, "fast", n), cells_per_hour(timings, "reference", n)
    print(f"\nrandom cells per hour: {rate(fast)} (reference ops: {rate(ref)})")


def rate(per_hour: float) -> str:
    """Whole numbers, but a decimal below 10 (a loaded machine's 3.4 and 2.6 are not both 3)."""
    return f"{per_hour:.0f}" if per_hour >= 10 else f"{per_hour:.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxy_speed")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per cell for the quality table")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-cache", action="store_true")
    parser.add_argument("--skip-timing", action="store_true", help="skip the step-time tables (1-3)")
    parser.add_argument("--quick", action="store_true", help="only the random cells' evaluations per hour (table 0)")
    parser.add_argument("--cells", type=int, default=None, help="random cells for table 0 (default 12, quick 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per cell (default 30, quick 10)")
    parser.add_argument("--skip-cells-per-hour", action="store_true", help="skip table 0")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu, {load_note()}")

    if args.quick or not args.skip_cells_per_hour:
        cells_per_hour_table(args.cells or (4 if args.quick else 12), args.steps or (10 if args.quick else 30))
    if args.quick:
        return 0
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
