"""Does the proxy rank cells the way the full task does?

``python -m analysis.correlate --storage runs/x.journal --study S --top 10 --random 10``
takes the top-K distinct cells of study S (or, with ``--experiment E``, of all the search
studies of an experiment pooled) by proxy mIOU and K more drawn at random (seeded) from
the rest of its complete trials, re-evaluates them with the full evaluator in a
companion study ``S-full`` of the same storage (resumable; ``--workers`` processes),
then reports Spearman rho, Kendall tau and Pearson r with bootstrap 95% intervals and the
top-k precision, for the top group (what the paper reports: rho = 0.46 on its top 50),
the random group and both together; plus a scatter plot of proxy vs full mIOU.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .load import AnalysisError, TrialRecord, best_complete, load_experiment_searches, load_study, read_storage
from .stats import METHODS, PAPER_SPEARMAN, correlations, top_k_precision

log = logging.getLogger(__name__)

GROUPS = ("top", "random", "all")
PAPER_NOTE = f"paper: Spearman rho = {PAPER_SPEARMAN} between proxy and full task on its top 50 cells"


def select_cells(records: list[TrialRecord], top: int, random: int, seed: int = 0) -> tuple[list[TrialRecord], list[TrialRecord]]:
    """Top ``top`` distinct cells by value, and ``random`` distinct others drawn with a seeded rng."""
    ranked = best_complete(records)
    if not ranked:
        raise AnalysisError("the study has no complete trial to correlate")
    top_group = ranked[:top]
    rest = ranked[top:]
    k = min(random, len(rest))
    if k < random:
        log.warning("only %d cells left for the random group (asked for %d)", k, random)
    idx = np.random.default_rng(seed).choice(len(rest), size=k, replace=False) if k else []
    return top_group, [rest[i] for i in sorted(idx)]


@dataclass
class CorrelationReport:
    """Per-cell values and per-group statistics of a correlation study."""

    source_study: str
    study: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # genome, group, proxy, full, proxy_rank
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"source_study": self.source_study, "study": self.study, "rows": self.rows, "groups": self.groups,
                "note": PAPER_NOTE}


def analyse(storage, study_name: str, precision_k: tuple[int, ...] = (5, 10), n_resamples: int = 2000,
            seed: int = 0) -> CorrelationReport:
    """Statistics of a companion study, from the storage alone (what the report re-runs)."""
    srec, recs = load_study(storage, study_name)
    # The selection of the last correlate run: a cell evaluated by an earlier run with
    # other --top/--random/--seed keeps its result but takes its group from this one.
    selection: dict[str, dict[str, Any]] = srec.user_attrs.get("selection") or {}
    rows: dict[str, dict[str, Any]] = {}
    for r in recs:
        key = r.genome_hash
        if not r.complete or key is None or key in rows or (selection and key not in selection):
            continue
        sel = selection.get(key, r.user_attrs)
        if sel.get("proxy_miou") is None:
            continue
        rows[key] = {"genome": r.genome, "genome_hash": key, "group": sel.get("group", "?"),
                     "proxy": float(sel["proxy_miou"]), "full": r.value, "n_params": r.n_params, "flops": r.flops,
                     "source_study": sel.get("source_study"), "source_trial": sel.get("source_trial")}
    ua = srec.user_attrs
    report = CorrelationReport(ua.get("source_study") or ua.get("source_experiment") or study_name, study_name)
    ordered = sorted(rows.values(), key=lambda row: -row["proxy"])
    for i, row in enumerate(ordered):
        row["proxy_rank"] = i + 1
    for i, row in enumerate(sorted(ordered, key=lambda row: -row["full"])):
        row["full_rank"] = i + 1
    report.rows = ordered
    for group in GROUPS:
        sel = [row for row in ordered if group == "all" or row["group"] == group]
        p = [row["proxy"] for row in sel]
        f = [row["full"] for row in sel]
        g: dict[str, Any] = {"n": len(sel)}
        if len(sel) >= 3:
            g.update({m: c.to_dict() for m, c in correlations(p, f, n_resamples=n_resamples, seed=seed).items()})
        # with every full score tied (e.g. a full task that learned nothing) there is no
        # top-k set and no winner: report neither rather than an arbitrary pick
        informative = len(set(f)) > 1
        g["top_k_precision"] = {str(k): top_k_precision(p, f, k) for k in precision_k if 0 < k < len(sel) and informative}
        if sel and f.count(max(f)) == 1:
            best = max(range(len(sel)), key=lambda i: f[i])
            g["full_winner_proxy_rank"] = 1 + int(np.sum(np.asarray(p) > p[best]))
        report.groups[group] = g
    return report


def format_table(report: CorrelationReport) -> str:
    ks = sorted({k for g in report.groups.values() for k in g.get("top_k_precision", {})}, key=int)
    head = f"{'group':<7} {'n':>3}  " + "  ".join(f"{m:<24}" for m in METHODS) + "".join(f"  prec@{k:<3}" for k in ks)
    head += "  winner's proxy rank"
    lines = [head, "-" * len(head)]
    for name, g in report.groups.items():
        cells = []
        for m in METHODS:
            c = g.get(m)
            mark = "" if not c or c.get("interval", "BCa") == "BCa" else "p"  # p: percentile (BCa undefined)
            cells.append(f"{c['estimate']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]{mark}" if c and c["estimate"] == c["estimate"]
                         else "n/a".ljust(24))
        prec = "".join(f"  {g['top_k_precision'][k]:<8.2f}" if k in g["top_k_precision"] else "  " + "-".ljust(8) for k in ks)
        rank = g.get("full_winner_proxy_rank", "-")
        lines.append(f"{name:<7} {g['n']:>3}  " + "  ".join(f"{c:<24}" for c in cells) + prec + f"  {rank}")
    if any("]p" in line for line in lines):
        lines.append("p: percentile interval (BCa is undefined for this degenerate bootstrap distribution)")
    return "\n".join(lines)


def plot(report: CorrelationReport, out: Path) -> dict[str, Any]:
    from .plots import plot_correlation

    rows = report.rows
    return plot_correlation([r["proxy"] for r in rows], [r["full"] for r in rows], [r["group"] for r in rows],
                            out, summary=report.groups)


def run(args: argparse.Namespace, argv: list[str]) -> CorrelationReport:
    from strategies.cells import Cell, evaluate_cells

    storage = read_storage(args.storage)
    if args.study:
        srec, recs = load_study(storage, args.study)
        source, configs, n_complete = args.study, {srec.config}, srec.n_complete
        source_attrs = {"source_study": args.study}
    else:
        studies, recs = load_experiment_searches(storage, args.experiment)
        source, configs, n_complete = args.experiment, {s.config for s in studies}, sum(s.n_complete for s in studies)
        source_attrs = {"source_experiment": args.experiment, "source_studies": [s.name for s in studies]}
    if n_complete == 0:
        raise AnalysisError(f"{'study' if args.study else 'experiment'} {source!r} has no complete trial")
    top, rand = select_cells(recs, args.top, args.random, args.seed)
    from dpc.genome import Genome

    cells = []
    for group, sel in (("top", top), ("random", rand)):
        for r in sel:
            cells.append(Cell(Genome.parse(r.genome), {"group": group, "proxy_miou": r.value, "source_study": r.study,
                                                       "source_trial": r.number}))
    # None: the evaluator's default (cpu)
    config = args.config or (next(iter(configs)) if len(configs) == 1 else None)
    if args.config is None and len(configs) > 1:
        raise AnalysisError(f"the studies used several configs ({', '.join(sorted(map(str, configs)))}): pass --config")
    companion = args.name or f"{source}-full"
    out = Path(args.out) if args.out else (Path(companion) if "://" in str(args.storage) else Path(args.storage).parent / companion)
    from strategies.run import out_dir_problem

    problem = out_dir_problem(str(out), "--out")  # before the (expensive) full-task evaluations
    if problem:
        raise AnalysisError(problem + ("" if args.out else " (the default output folder; pass --out)"))
    command = "python -m analysis.correlate " + shlex.join(argv)
    print(f"{source}: {n_complete} complete trials -> {len(top)} top + {len(rand)} random distinct cells, evaluated with "
          f"objective '{args.objective}'{' (config ' + config + ')' if config else ''} in study {companion!r}")
    evaluate_cells(
        args.storage, companion, cells, args.objective, config=config, eval_seed=args.eval_seed, workers=args.workers,
        dataset=args.dataset,
        study_attrs={"kind": "correlation", **source_attrs, "objective": args.objective, "config": config,
                     "top": args.top, "random": args.random, "seed": args.seed, "command": command,
                     "selection": {c.key: dict(c.attrs) for c in cells}},
        progress=not args.no_progress,
    )
    report = analyse(storage, companion, tuple(args.precision_k), args.n_resamples, args.seed)
    missing = len(cells) - len(report.rows)
    if missing:
        print(f"warning: {missing} of {len(cells)} cells have no full-task result (failed); rerun to retry them",
              file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    data = report.to_dict()
    data["command"] = command
    data["figure"] = plot(report, out / "correlation")["files"]
    (out / "correlation.json").write_text(json.dumps(data, indent=1, default=_json_default))
    print(format_table(report))
    print(f"({PAPER_NOTE})")
    print(f"wrote {out / 'correlation.png'}, {out / 'correlation.svg'}, {out / 'correlation.json'}")
    return report


def _json_default(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.correlate", description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", required=True, help="journal file or database URL holding the study")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--study", help="the search study to take cells from")
    src.add_argument("--experiment", help="... or every search study of an experiment ({experiment}-{strategy}-seed{seed}), "
                     "pooled: its distinct cells ranked together")
    p.add_argument("--top", type=int, default=10, help="best distinct cells by proxy mIOU (default 10)")
    p.add_argument("--random", type=int, default=10, help="cells drawn at random from the rest (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random draw and of the bootstrap")
    p.add_argument("--dataset", default=None, help="data of the full task: scenes[:PRESET] (default), voc:PATH or "
                   "cityscapes:PATH")
    p.add_argument("--objective", default="full", help="evaluator of the full task (default 'full'; 'proxy', "
                   "'synthetic' or module:callable also work, e.g. to check the proxy's seed noise)")
    p.add_argument("--config", default=None, help="evaluator config test|cpu|paper (default: the study's config)")
    p.add_argument("--eval-seed", type=int, default=None, help="training seed of the full evaluations (default: the config's)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--name", default=None, help="companion study name (default '{study}-full' or '{experiment}-full')")
    p.add_argument("--out", default=None, help="output folder (default: next to the storage, named after the companion study)")
    p.add_argument("--precision-k", type=int, nargs="+", default=[5, 10], help="k of the top-k precision (default 5 10)")
    p.add_argument("--n-resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    if args.top < 0 or args.random < 0 or args.top + args.random < 3:
        p.error("--top + --random must be at least 3 cells (and neither negative)")
    if args.workers < 1:
        p.error("--workers must be >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        run(args, argv)
    except (AnalysisError, ValueError) as e:
        p.error(str(e))
    except OSError as e:  # e.g. a read-only file system, a full disk: the evaluations are in the storage
        p.error(f"I/O error: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")
                + " (finished evaluations are kept in the storage; rerun to continue)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
