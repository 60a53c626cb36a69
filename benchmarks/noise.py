"""How noisy is the proxy? The ceiling for every predictor of it.

``python -m benchmarks.noise --config cpu --cells 20 --seeds 3`` trains N cells (the zoo's, then
uniform random ones) with S training seeds each and prints, for val and test: each cell's mean
and std over seeds, the mean std, and the Spearman rho between the cell rankings of two seeds
(every pair of seeds). No predictor of the proxy (a surrogate, a zero-cost proxy, the full task)
can rank cells better than the proxy agrees with itself across seeds: report correlations beside
that ceiling. The evaluations are a queue study in ``--storage`` (resumable: rerun the command),
and the table is written with its provenance to ``--out`` as JSON.

Which split is quieter: the per-cell seed stds of test against val's (a Wilcoxon signed-rank
test over cells), and with ``--baseline OTHER.json`` each split's stds against another noise
table of the same cells (e.g. the same trained heads scored on another scene set's test split:
training on byte-identical train scenes is deterministic, so the seeds give the same heads).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ZOO_FIRST = ("aspp", "top1_cityscapes", "weak")


def cells(n: int, seed: int = 0, branches: int = 5) -> list:
    """The zoo's cells, then uniform random ones (distinct by canonical hash), ``n`` in all."""
    from dpc.mutation import sample_genome
    from dpc.zoo import zoo_cell

    out, seen = [], set()
    for name in ZOO_FIRST[:n]:
        g = zoo_cell(name)
        out.append((name, g))
        seen.add(g.canonical_hash())
    rng = np.random.default_rng([seed, 7])
    while len(out) < n:
        g = sample_genome(rng, branches)
        if g.canonical_hash() not in seen:
            seen.add(g.canonical_hash())
            out.append((f"random{len(out) - len(ZOO_FIRST[:n])}", g))
    return out


def seed_rank_agreement(table: np.ndarray) -> dict[str, Any]:
    """Spearman rho between the cell rankings of every pair of seeds (table: cells x seeds)."""
    from scipy import stats

    rhos = []
    for a, b in itertools.combinations(range(table.shape[1]), 2):
        x, y = table[:, a], table[:, b]
        keep = np.isfinite(x) & np.isfinite(y)
        if keep.sum() >= 3 and np.ptp(x[keep]) > 0 and np.ptp(y[keep]) > 0:
            rhos.append(float(stats.spearmanr(x[keep], y[keep]).statistic))
    return {"pairs": len(rhos), "mean": statistics.fmean(rhos) if rhos else math.nan,
            "min": min(rhos) if rhos else math.nan, "max": max(rhos) if rhos else math.nan}


def summarize(names: list[str], values: dict[str, np.ndarray]) -> dict[str, Any]:
    """values: split -> (cells x seeds) array (NaN where an evaluation is missing)."""
    out: dict[str, Any] = {"cells": names}
    for split, table in values.items():
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # cells with fewer than two seeds yet: NaN
            stds = np.nanstd(table, axis=1, ddof=1) if table.shape[1] > 1 else np.full(len(names), math.nan)
            means = np.nanmean(table, axis=1)
        out[split] = {"mean": means.tolist(), "std": stds.tolist(), "n": np.isfinite(table).sum(axis=1).tolist(),
                      "mean_std": float(np.nanmean(stds)) if np.isfinite(stds).any() else math.nan,
                      "pooled_std": float(np.sqrt(np.nanmean(stds**2))) if np.isfinite(stds).any() else math.nan,
                      "seed_vs_seed_spearman": seed_rank_agreement(table)}
    if "val" in out and "test" in out:
        seeds = next(iter(values.values())).shape[1]
        out["test_vs_val"] = compare_stds(*complete(out["test"], out["val"], seeds))
    return out


def complete(a: dict[str, Any], b: dict[str, Any], seeds: int) -> tuple[list[float], list[float]]:
    """The two splits' per-cell stds, NaN where either cell lacks some of its seeds (a study still
    running): a 2-seed std beside a 3-seed one is no pair. A table without counts is complete."""
    full = [all(n is None or n >= seeds for n in pair)
            for pair in zip(a.get("n") or [None] * len(a["std"]), b.get("n") or [None] * len(b["std"]))]
    return ([x if ok else math.nan for x, ok in zip(a["std"], full)],
            [y if ok else math.nan for y, ok in zip(b["std"], full)])


def compare_stds(a: list[float], b: list[float]) -> dict[str, Any]:
    """Per-cell seed stds ``a`` against ``b`` (same cells): in how many cells a is lower, the
    pooled stds, and a two-sided Wilcoxon signed-rank p over the cells where both are known."""
    from scipy import stats

    x, y = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    p = float(stats.wilcoxon(x, y).pvalue) if len(x) >= 6 and np.any(x != y) else math.nan
    return {"cells": int(len(x)), "lower": int((x < y).sum()),
            "pooled": [float(np.sqrt(np.mean(x**2))) if len(x) else math.nan,
                       float(np.sqrt(np.mean(y**2))) if len(y) else math.nan],
            "wilcoxon_p": p}


def comparison_line(label: str, c: dict[str, Any]) -> str:
    return (f"{label}: lower in {c['lower']} of {c['cells']} cells, pooled seed std {c['pooled'][0]:.4f} vs "
            f"{c['pooled'][1]:.4f}, Wilcoxon signed-rank p = {c['wilcoxon_p']:.3g}")


def format_table(summary: dict[str, Any]) -> str:
    splits = [s for s in ("val", "test") if s in summary]
    head = f"{'cell':<16}" + "".join(f"  {s + ' mean':>9}  {s + ' std':>8}" for s in splits)
    lines = [head, "-" * len(head)]
    for i, name in enumerate(summary["cells"]):
        lines.append(f"{name:<16}" + "".join(
            f"  {summary[s]['mean'][i]:>9.4f}  {summary[s]['std'][i]:>8.4f}" for s in splits))
    lines.append("-" * len(head))
    lines.append(f"{'mean std':<16}" + "".join(f"  {'':>9}  {summary[s]['mean_std']:>8.4f}" for s in splits))
    for s in splits:
        r = summary[s]["seed_vs_seed_spearman"]
        lines.append(f"seed-vs-seed Spearman rho on {s}: mean {r['mean']:+.3f} (min {r['min']:+.3f}, max {r['max']:+.3f}, "
                     f"{r['pairs']} seed pairs): the ceiling for any predictor of this proxy")
    if "test_vs_val" in summary:
        lines.append(comparison_line("test's seed std vs val's", summary["test_vs_val"]))
    return "\n".join(lines)


def baseline_comparison(summary: dict[str, Any], path: str, seeds: int, p: argparse.ArgumentParser) -> dict[str, Any]:
    """Each split's per-cell stds against those of the noise JSON at ``path`` (same cells, in order)."""
    try:
        base = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        p.error(f"--baseline {path}: {e}")
    if base.get("cells") != summary["cells"]:
        p.error(f"--baseline {path}: its cells differ from this study's (another --cells or --cell-seed?)")
    out: dict[str, Any] = {"file": str(path), "scene_key": base.get("provenance", {}).get("scene_key")}
    if base.get("seeds") != seeds:
        p.error(f"--baseline {path}: {base.get('seeds')} seeds a cell, this study {seeds}")
    for split in ("val", "test"):
        if split in summary and split in base:
            out[split] = c = compare_stds(*complete(summary[split], base[split], seeds))
            print(comparison_line(f"{split} seed std vs {path}'s", c))
    return out


def provenance(argv: list[str], objective, result_attrs: dict[str, Any]) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "torchvision", "numpy", "scipy", "optuna", "scikit-image", "pillow"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {"command": "python -m benchmarks.noise " + shlex.join(argv), "objective": objective.spec,
            "config": objective.config, "config_hash": result_attrs.get("config_hash"),
            "device": result_attrs.get("device"), "precision": result_attrs.get("precision"),
            "machine": platform.machine(), "python": platform.python_version(), "versions": versions,
            "scene_key": _scene_key(objective), "date": time.strftime("%Y-%m-%d")}


def _scene_key(objective) -> str | None:
    """The embedded scene set a proxy/full objective trains and scores on (None for others)."""
    if objective.spec not in ("proxy", "full") or getattr(objective, "dataset", None) not in (None, "", "scenes"):
        return None
    from proxy.config import get_config
    from proxy.scenes import resolve_config, scene_key

    return scene_key(resolve_config(get_config(objective.config, full=objective.spec == "full").scenes))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.noise", description=__doc__.split("\n\n")[0])
    p.add_argument("--objective", default="proxy", help="proxy (default), full, or module:callable taking seed=")
    p.add_argument("--config", default="cpu", help="evaluator config (default cpu)")
    p.add_argument("--cells", type=int, default=20, help="cells: the zoo's 3, then uniform random ones (default 20)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per cell: 0 .. S-1 (default 3)")
    p.add_argument("--cell-seed", type=int, default=0, help="seed of the random cells' draw (default 0)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--storage", default=None, help="journal or URL (default runs/noise-{config}.journal)")
    p.add_argument("--out", default=None, help="JSON output (default runs/noise-{config}.json)")
    p.add_argument("--cache-dir", default=None, help="dataset and feature cache")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--baseline", default=None, help="another noise JSON of the same cells: compare each split's seed stds with it")
    p.add_argument("--report-only", action="store_true",
                   help="evaluate nothing: the table of what the study holds so far (missing cells as NaN)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    if not 2 <= args.cells <= 10_000 or not 2 <= args.seeds <= 100 or args.workers < 1:
        p.error("need --cells in [2, 10000], --seeds in [2, 100] and --workers >= 1")
    from strategies.cells import Cell, evaluate_cells
    from strategies.objectives import ObjectiveError, resolve_objective

    try:
        obj = resolve_objective(args.objective, config=args.config, cache_dir=args.cache_dir)
    except ObjectiveError as e:
        p.error(str(e))
    if not obj.takes_seed:
        p.error(f"objective {obj.spec} takes no training seed: its noise cannot be measured")
    storage = args.storage or str(Path("runs") / f"noise-{obj.config or obj.name}.journal")
    out = Path(args.out or Path("runs") / f"noise-{obj.config or obj.name}.json")
    chosen = cells(args.cells, args.cell_seed)
    queue = [Cell(g, {"cell": name}, seed=s) for name, g in chosen for s in range(args.seeds)]
    name = f"noise-{obj.config or obj.name}-{args.cells}x{args.seeds}-cellseed{args.cell_seed}"
    print(f"{len(chosen)} cells x {args.seeds} seeds = {len(queue)} evaluations of {obj.spec}"
          f"{f' (config {obj.config})' if obj.config else ''} in study {name} of {storage}", flush=True)
    if args.report_only:
        import optuna

        from strategies.storage import StorageError, open_storage

        try:
            study = optuna.load_study(study_name=name, storage=open_storage(storage, must_exist=True).storage)
        except (StorageError, KeyError) as e:
            p.error(f"--report-only: no study {name} in {storage}: {e}")
    else:
        study = evaluate_cells(storage, name, queue, args.objective if args.workers > 1 else obj, config=obj.config,
                               workers=args.workers, progress=not args.quiet, cache_dir=args.cache_dir,
                               study_attrs={"kind": "noise", "command": "python -m benchmarks.noise " + shlex.join(argv)})
    from optuna.trial import TrialState

    index = {name: i for i, (name, _) in enumerate(chosen)}
    values = {"val": np.full((len(chosen), args.seeds), np.nan), "test": np.full((len(chosen), args.seeds), np.nan)}
    attrs: dict[str, Any] = {}
    hashes: set[str] = set()
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("config_hash"):
            hashes.add(t.user_attrs["config_hash"])
        cell, seed = t.user_attrs.get("cell"), t.user_attrs.get("eval_seed")
        if cell in index and seed is not None and seed < args.seeds:
            values["val"][index[cell], seed] = t.value
            if t.user_attrs.get("test_miou") is not None:
                values["test"][index[cell], seed] = t.user_attrs["test_miou"]
            attrs = attrs or dict(t.user_attrs)
    if np.isnan(values["test"]).all():
        del values["test"]
    missing = int(np.isnan(values["val"]).sum())
    summary = summarize([n for n, _ in chosen], values)
    print(format_table(summary))
    if args.baseline:
        summary["baseline"] = baseline_comparison(summary, args.baseline, args.seeds, p)
    if missing:
        print(f"warning: {missing} evaluations failed or are missing; rerun to retry them", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    prov = provenance(argv, obj, attrs)
    prov["collected_by"] = study.user_attrs.get("command")  # the command that ran the evaluations
    prov["missing_evaluations"] = missing
    prov["config_hashes"] = sorted(hashes)
    if len(hashes) > 1:  # one config under two hash formulas (code changed mid-study), or two configs
        print(f"warning: the trials carry {len(hashes)} config hashes ({', '.join(sorted(hashes))}): another config, "
              "or the same one hashed by other code", file=sys.stderr)
    out.write_text(json.dumps({"provenance": prov, "seeds": args.seeds,
                               "genomes": {n: str(g) for n, g in chosen}, **summary}, indent=1, default=float) + "\n")
    print(f"written {out}")
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
