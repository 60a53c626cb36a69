"""The proxy-vs-full study, recomputed from its committed records on any CPU.

``python -m analysis.fullstudy --data study/records`` reads every ``*.jsonl`` under ``--data``: one
evaluation per line with ``genome``, ``canonical_hash``, ``task`` (``proxy`` | ``full``), ``seed``,
``val_miou``, ``test_miou`` and, for the report, ``role`` (``aspp``, ``top1``, ``top``,
``stratified``), ``params``, ``flops``, ``config_hash``, ``device`` (duplicates of (hash, task,
seed) count once, the first; failed ones, ``error`` set, not at all), and a cell's ``zero_cost``
record its ``synflow`` and ``naswot`` scores. Per cell the proxy score is
its mean val mIOU over seeds (what a search sees) and the full-task score its mean **test** mIOU.

It prints: Spearman, Kendall and Pearson between them with bootstrap intervals; each task's
seed-vs-seed Spearman (the noise ceilings) and the attenuation-corrected Spearman (rho divided by
the square root of the two reliabilities of a per-cell mean, Spearman-Brown from the single-seed
ones); top-k precision; the proxy rank of the full task's winner; the same correlations for params,
FLOPs, synflow and NASWOT; and the paper's question, whether the best searched cell (the best non-reference cell by
the proxy) beats ASPP on the full task's test split (Welch's t-test over their full-task seeds).
It ends with the lines ``cells: N``, ``spearman: X.XX [LO, HI]`` and
``best searched vs aspp (full task, test): +D.DDDD p=P``. ``--json FILE`` writes it all,
``--markdown FILE`` the README's tables; ``--figure FILE`` draws it (the cells' scatter beside each
predictor's rho under the noise ceiling); ``--versus DIR`` also correlates this study's full task
with another study's on their shared cells (the CPU-sized full task against the GPU-sized one).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REFERENCE_ROLES = ("aspp", "top1")
TASKS = ("proxy", "full")
PREDICTORS = ("params", "flops", "synflow", "naswot")  # cheap predictors, each against the full task


def read(data: str | Path) -> list[dict]:
    """Every complete evaluation under ``data``, first record of each (hash, task, seed), with the role
    its ``plan.json`` gives the cell; a partial last line is skipped."""
    seen: dict[tuple, dict] = {}
    for path in sorted(Path(data).rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if r.get("error") is not None or (r.get("task") in TASKS and not isinstance(r.get("val_miou"), (int, float))):
                continue
            seen.setdefault((r["canonical_hash"], r["task"], int(r["seed"])), r)
    roles = {}  # the plan names each planned cell's role (an imported record may predate the plan)
    for plan in sorted(Path(data).rglob("plan.json")):
        try:
            roles.update({c["genome"]: c["role"] for c in json.loads(plan.read_text())["cells"]})
        except (ValueError, KeyError, TypeError):
            continue
    return [dict(r, role=roles[r["genome"]]) if r["genome"] in roles else r for r in seen.values()]


def mixed(records: list[dict]) -> Optional[str]:
    """Why the records are not one study (several config hashes of a task, several scene sets), else None."""
    for task in ("proxy", "full"):
        hashes = sorted({r["config_hash"] for r in records if r["task"] == task and r.get("config_hash")})
        if len(hashes) > 1:
            return f"{task} records of {len(hashes)} config hashes ({', '.join(hashes)})"
    keys = sorted({r["scene_key"] for r in records if r.get("scene_key")})
    if len(keys) > 1:
        return f"records of {len(keys)} scene sets ({', '.join(keys)})"
    return None


def cells_of(records: list[dict], complete: bool = True) -> list[dict]:
    """Cells with at least one proxy and one full evaluation (``complete=False``: every cell seen),
    proxy val and full test per seed."""
    by: dict[str, dict[str, Any]] = {}
    for r in records:
        c = by.setdefault(r["canonical_hash"], {"hash": r["canonical_hash"], "genome": r["genome"], "role": None,
                                                "proxy": {}, "full": {}, **{k: None for k in PREDICTORS}})
        c["role"] = c["role"] or r.get("role")
        for k in PREDICTORS:
            c[k] = c[k] if c[k] is not None else r.get(k)
        if r["task"] not in TASKS:
            continue
        value = r["val_miou"] if r["task"] == "proxy" else r.get("test_miou")
        if isinstance(value, (int, float)) and math.isfinite(value):
            c[r["task"]][int(r["seed"])] = float(value)
    return [c for _, c in sorted(by.items()) if not complete or (c["proxy"] and c["full"])]


def best_searched(cells: list[dict]) -> Optional[dict]:
    """The searched (non-reference) cell with the best mean proxy val: the one the paper re-trains."""
    searched = [c for c in cells if c["role"] not in REFERENCE_ROLES and c["proxy"]]
    return max(searched, key=lambda c: float(np.mean(list(c["proxy"].values()))), default=None)


def seed_spearman(cells: list[dict], task: str) -> float:
    """Mean Spearman rho between the task's seeds over the cells that have both (NaN below 3 cells)."""
    from scipy import stats

    seeds = sorted({s for c in cells for s in c[task]})
    rhos = []
    for i, a in enumerate(seeds):
        for b in seeds[i + 1:]:
            both = [c for c in cells if a in c[task] and b in c[task]]
            x, y = [c[task][a] for c in both], [c[task][b] for c in both]
            if len(both) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
                rhos.append(float(stats.spearmanr(x, y).statistic))
    return float(np.mean(rhos)) if rhos else math.nan


def mean_reliability(r: float, k: float) -> float:
    """Spearman-Brown: the reliability of a mean of k seeds from the single-seed one."""
    return k * r / (1 + (k - 1) * r) if math.isfinite(r) and r > 0 else math.nan


def cost_hours(records: list[dict]) -> dict[str, dict[str, Any]]:
    """Train + eval hours of the study's evaluations by task and device (a worker's clock: on a
    shared CPU it counts the neighbours' load too), for the study's cost in GPU-minutes or core-hours."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("task") not in TASKS:
            continue
        key = f"{r['task']} on {r.get('device') or 'unknown'}"
        c = out.setdefault(key, {"evaluations": 0, "hours": 0.0, "timed": 0})
        c["evaluations"] += 1
        secs = [r.get(k) for k in ("train_seconds", "eval_seconds")]
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in secs):
            c["hours"] += sum(secs) / 3600
            c["timed"] += 1
    return out


def analyse(records: list[dict], n_resamples: int = 2000) -> dict[str, Any]:
    from scipy import stats

    from .stats import correlations, top_k_precision

    cells = cells_of(records)
    out: dict[str, Any] = {"cells": len(cells), "cost_hours": cost_hours(records)}
    if len(cells) < 3:
        return out
    proxy = np.array([np.mean(list(c["proxy"].values())) for c in cells])
    full = np.array([np.mean(list(c["full"].values())) for c in cells])
    corr = correlations(proxy, full, n_resamples=n_resamples)
    out["correlation"] = {m: c.to_dict() for m, c in corr.items()}
    ceil = {t: seed_spearman(cells, t) for t in ("proxy", "full")}
    k = {t: float(np.mean([len(c[t]) for c in cells])) for t in ("proxy", "full")}
    rel = {t: mean_reliability(ceil[t], k[t]) for t in ceil}
    out["seed_spearman"] = ceil
    out["reliability_of_mean"] = rel
    out["spearman_corrected"] = (corr["spearman"].estimate / math.sqrt(rel["proxy"] * rel["full"])
                                 if all(math.isfinite(v) and v > 0 for v in rel.values()) else math.nan)
    out["top_k_precision"] = {str(kk): top_k_precision(proxy, full, kk) for kk in (1, 3, 5, 10) if kk <= len(cells) // 2}
    winner = int(np.argmax(full))
    out["full_winner"] = {"genome": cells[winner]["genome"], "proxy_rank": int((proxy > proxy[winner]).sum()) + 1}
    for cost in PREDICTORS:
        xs = np.array([c[cost] if c[cost] is not None else math.nan for c in cells], dtype=float)
        if np.isfinite(xs).sum() >= 3:
            out[f"{cost}_spearman"] = correlations(xs, full, n_resamples=n_resamples)["spearman"].to_dict()
    aspp = next((c for c in cells if c["role"] == "aspp"), None)
    best = best_searched(cells)
    if aspp is not None and best is not None:
        a, b = list(best["full"].values()), list(aspp["full"].values())
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue) if len(a) >= 2 and len(b) >= 2 else math.nan
        out["best_vs_aspp"] = {"genome": best["genome"], "difference": float(np.mean(a) - np.mean(b)), "p": p,
                               "best_full_test": a, "aspp_full_test": b}
    return out


def versus(records: list[dict], other: list[dict], n_resamples: int = 2000) -> dict[str, Any]:
    """Do two full tasks (e.g. the CPU-sized and the GPU-sized one) rank the cells they share alike?
    Spearman, Kendall and Pearson of their per-cell mean test mIOU, with bootstrap intervals."""
    from .stats import correlations

    def means(recs: list[dict]) -> dict[str, float]:
        by: dict[str, list[float]] = {}
        for r in recs:
            if r["task"] == "full" and isinstance(r.get("test_miou"), (int, float)) and math.isfinite(r["test_miou"]):
                by.setdefault(r["canonical_hash"], []).append(float(r["test_miou"]))
        return {h: float(np.mean(v)) for h, v in by.items()}

    a, b = means(records), means(other)
    shared = sorted(set(a) & set(b))
    out: dict[str, Any] = {"shared_cells": len(shared)}
    if len(shared) >= 3:
        corr = correlations([a[h] for h in shared], [b[h] for h in shared], n_resamples=n_resamples)
        out["correlation"] = {m: c.to_dict() for m, c in corr.items()}
    return out


def text(res: dict[str, Any]) -> str:
    def f(v: Optional[float], d: str = "+.2f") -> str:
        return "n/a" if v is None or not math.isfinite(v) else format(v, d)

    lines = []
    corr = res.get("correlation", {})
    for m, c in corr.items():
        lines.append(f"{m:<9} {f(c['estimate'], '+.3f')} [{f(c['low'], '+.3f')}, {f(c['high'], '+.3f')}]  (n={c['n']})")
    if corr:
        s = res["seed_spearman"]
        lines.append(f"seed-vs-seed spearman: proxy {f(s['proxy'])}, full {f(s['full'])}; attenuation-corrected "
                     f"spearman {f(res['spearman_corrected'])}")
        lines.append("top-k precision: " + ", ".join(f"k={k} {v:.2f}" for k, v in res["top_k_precision"].items()))
        lines.append(f"full-task winner {res['full_winner']['genome']} is proxy rank {res['full_winner']['proxy_rank']}")
        for cost in PREDICTORS:
            if f"{cost}_spearman" in res:
                c = res[f"{cost}_spearman"]
                lines.append(f"{cost} vs full: spearman {f(c['estimate'])} [{f(c['low'])}, {f(c['high'])}] (n={c['n']})")
    for key, c in sorted(res.get("cost_hours", {}).items()):
        lines.append(f"cost: {key}: {c['evaluations']} evaluations, {c['hours']:.1f} h"
                     + (f" ({c['timed']} timed)" if c["timed"] < c["evaluations"] else ""))
    lines.append(f"cells: {res['cells']}")
    sp = corr.get("spearman")
    lines.append(f"spearman: {f(sp['estimate'], '.2f') if sp else 'n/a'} [{f(sp['low'], '.2f') if sp else 'n/a'}, "
                 f"{f(sp['high'], '.2f') if sp else 'n/a'}]")
    bv = res.get("best_vs_aspp")
    lines.append(f"best searched vs aspp (full task, test): {f(bv['difference'], '+.4f') if bv else 'n/a'} "
                 f"p={f(bv['p'], '.3g') if bv else 'n/a'}")
    return "\n".join(lines)


PREDICTOR_NAMES = (("proxy (mean val mIOU)", None), ("params", "params_spearman"), ("FLOPs", "flops_spearman"),
                   ("synflow", "synflow_spearman"), ("NASWOT", "naswot_spearman"))


def markdown(res: dict[str, Any], cells: list[dict]) -> str:
    """The README's two tables: each predictor's rho vs the full task, then the cells by full-task score."""
    def ci(c: dict) -> str:
        return "n/a" if not math.isfinite(c["estimate"]) else f"{c['estimate']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]"

    rows = ["| predictor of the full task | Spearman rho [95% bootstrap] | cells |", "|---|---|---|"]
    for name, key in PREDICTOR_NAMES:
        c = res.get(key) if key else res.get("correlation", {}).get("spearman")
        if c:
            rows.append(f"| {name} | {ci(c)} | {c['n']} |")
    rows += ["", "| role | cell | proxy val (seeds) | full-task test (seeds) |", "|---|---|---|---|"]
    for c in sorted(cells, key=lambda c: -float(np.mean(list(c["full"].values())))):
        rows.append(f"| {c['role']} | `{c['genome']}` | {np.mean(list(c['proxy'].values())):.4f} ({len(c['proxy'])}) | "
                    f"{np.mean(list(c['full'].values())):.4f} ({len(c['full'])}) |")
    return "\n".join(rows) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.fullstudy", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="study/records", help="folder of the study's *.jsonl records (default study/records)")
    p.add_argument("--json", default=None, help="write the whole result here")
    p.add_argument("--n-resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--versus", default=None, metavar="DIR",
                   help="another full task's study directory: how alike the two rank their shared cells")
    p.add_argument("--figure", default=None, help="draw the study here (.png and .svg; analysis.plots.plot_fullstudy)")
    p.add_argument("--markdown", default=None, help="write the README's tables here (predictors, then cells)")
    args = p.parse_args(argv)
    if not Path(args.data).is_dir():
        p.error(f"{args.data} is not a directory (the study's records live in study/records)")
    records = read(args.data)
    why = mixed(records)
    if why:
        p.error(f"{args.data} holds {why}: point --data at one study directory, e.g. "
                + next((str(d) for d in sorted(Path(args.data).iterdir()) if d.is_dir()), "study/records/<dir>"))
    res = analyse(records, n_resamples=args.n_resamples)
    if args.versus:
        if not Path(args.versus).is_dir():
            p.error(f"--versus {args.versus} is not a directory")
        vs = versus(records, read(args.versus), n_resamples=args.n_resamples)
        res["versus"] = {"data": args.versus, **vs}
        sp = vs.get("correlation", {}).get("spearman")
        print(f"full tasks of {args.data} and {args.versus} on {vs['shared_cells']} shared cells: "
              + (f"spearman {sp['estimate']:+.2f} [{sp['low']:+.2f}, {sp['high']:+.2f}]" if sp else "too few to correlate"))
    print(text(res))
    if args.figure and res.get("cells", 0) >= 1:
        from .plots import plot_fullstudy

        plot_fullstudy(cells_of(records), res, args.figure)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    if args.markdown:
        Path(args.markdown).write_text(markdown(res, cells_of(records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
