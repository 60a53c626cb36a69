"""The fidelity ladder of DPC-Bench: how well the val mIOU after s training steps ranks cells like the final one.

``python -m benchmarks.ladder [--data bench/records/DIR] [--out docs/figures/fidelity_ladder]`` prints a
markdown table (step, fraction of training, cells, Spearman rho and Kendall tau of val@step with the final
val mIOU and with the final test mIOU, the latter with a bootstrap 95% interval) and draws it. One record per cell (its lowest seed), so seeds do not
count twice. This is what a multi-fidelity search (a pruner stopping a candidate at step s) bets on: a
step whose rho is near the seed-to-seed ceiling loses little by stopping there.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .bench import DEFAULT_DATA, read_records
from .surrogate import _directory

MIN_CELLS = 5


def one_per_cell(records: list[dict]) -> list[dict]:
    """The lowest-seed complete record with a learning curve (two points or more) of each cell."""
    best: dict[str, dict] = {}
    for r in records:
        # a curve of one point (an imported final value) is no learning curve
        ok = r.get("error") is None and len(r.get("curve") or ()) > 1 and isinstance(r.get("val_miou"), (int, float))
        if ok and (r["canonical_hash"] not in best or r["seed"] < best[r["canonical_hash"]]["seed"]):
            best[r["canonical_hash"]] = r
    return [best[h] for h in sorted(best)]


def ladder(records: list[dict], n_resamples: int = 1000) -> list[dict[str, Any]]:
    """One row per curve step held by >= MIN_CELLS cells whose training ran to the common final step;
    the Spearman rho with the final test mIOU carries a bootstrap 95% interval."""
    from scipy import stats

    from analysis.stats import correlation

    cells = one_per_cell(records)
    if not cells:
        return []
    final = int(np.median([c["curve"][-1][0] for c in cells]))
    cells = [c for c in cells if c["curve"][-1][0] == final]
    steps = sorted({int(s) for c in cells for s, _ in c["curve"]})
    rows = []
    for step in steps:
        at = [(dict((int(s), v) for s, v in c["curve"]).get(step), c["val_miou"], c.get("test_miou")) for c in cells]
        at = [a for a in at if a[0] is not None and math.isfinite(a[0])]
        if len(at) < MIN_CELLS:
            continue
        x = np.array([a[0] for a in at])
        row: dict[str, Any] = {"step": step, "fraction": step / final, "cells": len(at)}
        for name, col in (("val", 1), ("test", 2)):
            y = np.array([a[col] if a[col] is not None else math.nan for a in at], dtype=float)
            m = np.isfinite(y)
            ok = m.sum() >= MIN_CELLS and np.ptp(x[m]) > 0 and np.ptp(y[m]) > 0
            row[f"spearman_{name}"] = float(stats.spearmanr(x[m], y[m]).statistic) if ok else math.nan
            row[f"kendall_{name}"] = float(stats.kendalltau(x[m], y[m]).statistic) if ok else math.nan
            if name == "test":  # the honest target, with its uncertainty: few cells make a wide interval
                c = correlation(x[m], y[m], n_resamples=n_resamples) if ok else None
                row["spearman_test_low"] = c.low if c else math.nan
                row["spearman_test_high"] = c.high if c else math.nan
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    def f(v: float) -> str:
        return "n/a" if not math.isfinite(v) else f"{v:+.2f}"

    lines = ["| step | of training | cells | rho vs final val | tau vs final val | rho vs final test [95%] | tau vs final test |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ci = f" [{f(r['spearman_test_low'])}, {f(r['spearman_test_high'])}]"
        lines.append(f"| {r['step']} | {r['fraction']:.0%} | {r['cells']} | {f(r['spearman_val'])} | {f(r['kendall_val'])} "
                     f"| {f(r['spearman_test'])}{ci} | {f(r['kendall_test'])} |")
    return "\n".join(lines)


def plot(rows: list[dict], out: Path, ceiling: Optional[float] = None, title: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    x = [r["step"] for r in rows]
    ax.plot(x, [r["spearman_val"] for r in rows], "o-", label="vs final val mIOU")
    ax.plot(x, [r["spearman_test"] for r in rows], "s--", label="vs final test mIOU")
    ax.fill_between(x, [r["spearman_test_low"] for r in rows], [r["spearman_test_high"] for r in rows],
                    color="C1", alpha=0.15, lw=0, label="test: bootstrap 95%")
    if ceiling is not None and math.isfinite(ceiling):
        ax.axhline(ceiling, color="grey", lw=1, ls=":", label=f"seed-to-seed ceiling ({ceiling:.2f})")
    ax.set_xlabel("training step of the val mIOU")
    ax.set_ylabel("Spearman rho")
    ax.set_ylim(max(-1.02, min(0.0, *(v for r in rows for v in (r["spearman_val"], r["spearman_test_low"])
                                      if math.isfinite(v))) - 0.05), 1.02)
    ax.set_title(title or f"Fidelity ladder ({rows[-1]['cells'] if rows else 0} cells)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, dpi=130)
    plt.close(fig)
    return paths


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ladder", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="a records directory, or the root holding one (default bench/records)")
    p.add_argument("--out", default=None, help="figure path without suffix (PNG and SVG); default: no figure")
    args = p.parse_args(argv)
    try:
        directory = _directory(args.data)
    except (SystemExit, ValueError) as e:
        p.error(str(e))
    records = read_records(directory)
    rows = ladder(records)
    if not rows:
        p.error(f"{directory}: fewer than {MIN_CELLS} cells with learning curves")
    from .bench import cell_table, seed_spearman

    ceiling = seed_spearman(cell_table(records))
    print(f"fidelity ladder of {directory} ({rows[-1]['cells']} cells, one record each)")
    print(table(rows))
    print(f"seed-to-seed spearman (ceiling): {'n/a' if not math.isfinite(ceiling) else f'{ceiling:.2f}'}")
    if args.out:
        for path in plot(rows, Path(args.out), ceiling):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
