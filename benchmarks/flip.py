"""Which flip augmentation should the proxy use? The zoo's val and test mIOU under each.

``python -m benchmarks.flip --config cpu --seeds 2`` trains the zoo's cells (ASPP, the paper's
top-1, five 1x1 convs) with each flip mode of ``proxy.config.FLIPS`` and prints val and test mIOU
(mean and spread over seeds) and the ASPP - five-1x1 gap, the separation a proxy must show.
``mirrored-images`` caches the features of the mirrored train images (an image flip, as the full
task does; it costs a second train feature cache), ``none`` does not flip, ``mirror-features``
(the old default) mirrors cached feature maps, which is not an image flip.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

CELLS = ("aspp", "top1_cityscapes", "weak")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.flip", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="cpu")
    p.add_argument("--flips", default="none,mirrored-images", help="comma-separated flip modes (default none,mirrored-images)")
    p.add_argument("--seeds", type=int, default=2, help="training seeds 0 .. S-1 (default 2)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None, help="JSON of every evaluation (default runs/flip-{config}.json)")
    args = p.parse_args(argv)
    from dpc.zoo import zoo_cell
    from proxy.config import FLIPS, get_config
    from proxy.evaluator import ProxyEvaluator

    flips = [f.strip() for f in args.flips.split(",") if f.strip()]
    bad = [f for f in flips if f not in FLIPS]
    if bad or args.seeds < 1:
        p.error(f"unknown flip {', '.join(bad)} (known: {', '.join(FLIPS)}), or --seeds < 1")
    out = Path(args.out or f"runs/flip-{args.config}.json")
    rows = json.loads(out.read_text()) if out.exists() else []  # resume: keep what is done
    done = {(r["flip"], r["cell"], r["seed"]) for r in rows}
    evaluators = {}
    for seed in range(args.seeds):  # seeds outermost: an interrupted run still compares the flips
        for flip in flips:
            for cell in CELLS:
                if (flip, cell, seed) in done:
                    continue
                if flip not in evaluators:
                    evaluators[flip] = ProxyEvaluator(get_config(args.config).replace(flip=flip), cache_dir=args.cache_dir)
                ev = evaluators[flip]
                t0 = time.time()
                r = ev.evaluate(zoo_cell(cell), seed=seed)
                rows.append({"flip": flip, "cell": cell, "seed": seed, "val": r.miou, "test": r.test_miou,
                             "seconds": time.time() - t0, "config_hash": r.config_hash, "device": r.device})
                print(f"{flip:<16} {cell:<16} seed {seed}: val {r.miou:.4f} test {r.test_miou:.4f}", flush=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\n{'flip':<16} {'cell':<16} {'val mean':>9} {'(min-max)':>15} {'test mean':>10} {'(min-max)':>15}")
    for flip in flips:
        means = {}
        for cell in CELLS:
            rs = [r for r in rows if r["flip"] == flip and r["cell"] == cell]
            if not rs:
                continue
            v, t = [r["val"] for r in rs], [r["test"] for r in rs]
            means[cell] = (statistics.fmean(v), statistics.fmean(t))
            print(f"{flip:<16} {cell:<16} {means[cell][0]:>9.4f} {f'({min(v):.4f}-{max(v):.4f})':>15} "
                  f"{means[cell][1]:>10.4f} {f'({min(t):.4f}-{max(t):.4f})':>15}")
        if "aspp" in means and "weak" in means:
            print(f"{flip:<16} {'ASPP - 1x1 gap':<16} {means['aspp'][0] - means['weak'][0]:>+9.4f} {'':>15} "
                  f"{means['aspp'][1] - means['weak'][1]:>+10.4f}")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
