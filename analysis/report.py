"""One Markdown page from a storage: figures, tables, best cells and the commands behind them.

``python -m analysis.report --storage runs/compare.log --out runs/report`` reads the
search studies of one experiment (``{experiment}-{strategy}-seed{seed}``), its reference
study (``{experiment}-reference``: the zoo cells under the same objective) and any
correlation study made from them (``analysis.correlate``), and writes ``report.md``,
``report.json`` and every figure as PNG and SVG. Everything is recomputed from the
storage, so the page can be regenerated at any time, e.g. while a comparison still runs.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .load import AnalysisError, StudyRecord, TrialRecord, best_complete, experiment_names, is_search, load_all, read_storage

log = logging.getLogger(__name__)

REFERENCE_KIND, CORRELATION_KIND = "reference", "correlation"


@dataclass
class Experiment:
    """The studies of one experiment, split by role."""

    name: str
    searches: list[StudyRecord] = field(default_factory=list)
    references: list[StudyRecord] = field(default_factory=list)
    correlations: list[StudyRecord] = field(default_factory=list)
    records: list[TrialRecord] = field(default_factory=list)  # of the search studies
    reference_records: list[TrialRecord] = field(default_factory=list)

    @property
    def objective(self) -> str:
        objs = sorted({str(s.objective) for s in self.searches if s.objective})
        return ", ".join(objs) or "?"

    @property
    def metric(self) -> str:
        """Axis label: an evaluator's value is an mIOU, a synthetic objective's a score."""
        objs = self.objective.split(", ")
        if all(o in ("proxy", "full") for o in objs):
            return "mIOU"
        return "score" if all(o.startswith("synthetic") for o in objs) else "value"


def load_experiment(storage, experiment: str | None = None) -> Experiment:
    """Split a storage's studies into one experiment's searches, references and correlations."""
    st = read_storage(storage)
    studies, records = load_all(st)
    if not studies:
        raise AnalysisError("the storage holds no study")
    names = experiment_names(studies)
    if experiment is None:
        if len(names) > 1:
            raise AnalysisError(f"the storage holds several experiments ({', '.join(names)}): pick one with --experiment")
        if not names:
            raise AnalysisError("the storage holds no search study (studies with strategy and seed attributes)")
        experiment = names[0]
    elif experiment not in names:
        raise AnalysisError(f"unknown experiment {experiment!r} (known: {', '.join(names) or 'none'})")
    exp = Experiment(experiment)
    search_names = set()
    for s in studies:
        kind = s.user_attrs.get("kind")
        if is_search(s) and s.experiment == experiment:
            exp.searches.append(s)
            search_names.add(s.name)
        elif kind == REFERENCE_KIND and s.user_attrs.get("experiment", s.name.removesuffix("-reference")) == experiment:
            exp.references.append(s)
    for s in studies:
        ua = s.user_attrs
        if ua.get("kind") == CORRELATION_KIND and (ua.get("source_study") in search_names or ua.get("source_experiment") == experiment):
            exp.correlations.append(s)
    ref_names = {s.name for s in exp.references}
    exp.records = [r for r in records if r.study in search_names]
    exp.reference_records = [r for r in records if r.study in ref_names]
    if not any(r.complete for r in exp.records):
        raise AnalysisError(f"experiment {experiment!r} has no complete trial yet")
    return exp


def references(exp: Experiment) -> list:
    """Best value of each reference cell (a cell re-evaluated with several seeds: the mean)."""
    from .plots import Reference

    by: dict[str, list[TrialRecord]] = defaultdict(list)
    for r in exp.reference_records:
        if r.complete:
            by[str(r.user_attrs.get("reference", r.genome))].append(r)
    out = []
    for name, recs in by.items():
        out.append(Reference(name, float(np.mean([r.value for r in recs])), recs[0].n_params, recs[0].flops, recs[0].genome))
    order = {"aspp": 0, "top1_cityscapes": 1}
    return sorted(out, key=lambda ref: (order.get(ref.name, 9), ref.name))


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int) and abs(v) >= 10_000:
        return f"{v:,}"
    return str(v)


def _p(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.2g}" if v >= 0.001 else f"{v:.1e}"


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def build(storage, out: str | Path, experiment: str | None = None, budget: int | None = None, top: int = 20,
          best: int = 5, command: str | None = None) -> dict[str, Any]:
    """Write the report into ``out``; returns everything it shows (``report.json``)."""
    from dpc.genome import Genome

    from . import plots
    from .cell_graph import draw_cell
    from .correlate import analyse, format_table
    from .curves import final_values, runs_from_records
    from .stats import pairwise_tests, summarize

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    exp = load_experiment(storage, experiment)
    refs = references(exp)
    metric = exp.metric
    budgets = [s.budget for s in exp.searches if s.budget]
    budget = budget or (min(budgets) if budgets else None)
    runs = runs_from_records(exp.records)
    final = final_values(runs, budget)
    data: dict[str, Any] = {"experiment": exp.name, "objective": exp.objective, "metric": metric, "budget": budget,
                            "references": [r.__dict__ for r in refs]}
    fig: dict[str, Any] = {}
    fig["best_so_far"] = plots.plot_best_so_far(runs, out / "best_so_far", references=refs, budget=budget,
                                                ylabel=f"best {metric} so far")
    fig["best_so_far_time"] = plots.plot_best_so_far(runs, out / "best_so_far_time", x="seconds", references=refs,
                                                     ylabel=f"best {metric} so far")
    fig["final_best"] = plots.plot_final_best(final, out / "final_best", references=refs,
                                              ylabel=f"best {metric} after {budget} evaluations" if budget else f"best {metric}")
    fig["pareto_flops"] = plots.plot_cost_vs_miou(exp.records, out / "pareto_flops", "flops", refs, ylabel=metric)
    fig["pareto_params"] = plots.plot_cost_vs_miou(exp.records, out / "pareto_params", "params", refs, ylabel=metric)
    top_cells = best_complete(exp.records, top)
    fig["choices"] = plots.plot_choice_frequency([Genome.parse(r.genome) for r in top_cells], out / "choices",
                                                 title=f"Choices among the top {len(top_cells)} distinct cells")
    best_cells = best_complete(exp.records, best)
    fig["best_cell"] = {"files": [str(p) for p in draw_cell(Genome.parse(best_cells[0].genome), out / "best_cell",
                        title=f"best cell: {metric} {best_cells[0].value:.4f} ({best_cells[0].study} #{best_cells[0].number})").files]}
    data["figures"] = fig

    # -- tables ---------------------------------------------------------------------------------
    summary_rows = []
    data["summary"] = {}
    for strategy, by_seed in runs.items():
        s = summarize(list(final[strategy].values()))
        evals = [len(r.values) for r in by_seed.values()]
        fails = [int(np.isnan(r.values).sum()) for r in by_seed.values()]
        durations = [r.duration for r in exp.records if r.strategy == strategy and r.duration is not None and r.finished]
        data["summary"][strategy] = {**s.to_dict(), "evaluations": evals, "failures": sum(fails),
                                     "median_seconds_per_evaluation": float(np.median(durations)) if durations else None}
        summary_rows.append([strategy, s.n, f"{s.mean:.4f} ± {s.std:.4f}", f"{s.median:.4f} [{s.q25:.4f}, {s.q75:.4f}]",
                             _fmt(s.best), f"{min(evals)}–{max(evals)}" if min(evals) != max(evals) else str(evals[0]),
                             sum(fails), _fmt(data["summary"][strategy]["median_seconds_per_evaluation"], 2)])
    tests = pairwise_tests(final)
    data["pairwise"] = [t.to_dict() for t in tests]
    test_rows = [[f"{t.a} vs {t.b}", _fmt(t.median_a), _fmt(t.median_b), _fmt(t.mw_u, 1), _p(t.mw_p), _p(t.mw_p_holm),
                  f"{t.cliffs_delta:+.2f}", t.wilcoxon_pairs, _p(t.wilcoxon_p), _p(t.wilcoxon_p_holm), f"{t.wilcoxon_r:+.2f}"
                  if math.isfinite(t.wilcoxon_r) else "–"] for t in tests]
    data["best_cells"] = []
    best_rows = []
    for i, r in enumerate(best_cells):
        g = Genome.parse(r.genome)
        cost = plots.analytic_cost(r.genome)
        row = {"rank": i + 1, "value": r.value, "strategy": r.strategy, "seed": r.seed, "study": r.study,
               "trial": r.number, "genome": r.genome, "json": g.to_json(), "hash": g.canonical_hash(),
               "params": r.n_params, "flops": r.flops, "table1_params": cost[0], "table1_flops": cost[1]}
        data["best_cells"].append(row)
        best_rows.append([i + 1, f"{r.value:.4f}", f"{r.strategy} s{r.seed} #{r.number}", f"`{r.genome}`",
                          _fmt(r.n_params), _fmt(r.flops), f"{cost[0]:,}", f"{cost[1] / 1e9:.2f}"])
    corr_sections = []
    data["correlations"] = []
    for cs in exp.correlations:
        rep = analyse(storage, cs.name)
        cdir = out / cs.name
        rep_fig = _plot_correlation(rep, cdir)
        data["correlations"].append({**rep.to_dict(), "command": cs.command, "figure": rep_fig})
        corr_sections.append((cs, rep, rep_fig))

    # -- the page -----------------------------------------------------------------------------------
    lines = [f"# Strategy comparison: `{exp.name}`", ""]
    lines += [f"Objective: **{exp.objective}** (config {', '.join(sorted({str(s.config) for s in exp.searches}))}); "
              f"budget **{budget}** evaluations; {len(exp.searches)} studies "
              f"({', '.join(f'{k} × {len(v)} seeds' for k, v in runs.items())}). "
              f"The incumbent is the best {metric} the search itself observed. Reference cells "
              f"({', '.join(f'{r.name} = {r.value:.4f}' for r in refs) or 'none evaluated'}) were evaluated with the same objective.", ""]
    lines += ["## Best so far", "", _img("best_so_far", "best so far vs evaluations"), "",
              _img("best_so_far_time", "best so far vs wall-clock time"), ""]
    lines += ["## Final incumbent per strategy", "", _img("final_best", "final best per strategy"), "",
              md_table(["strategy", "seeds", "mean ± std", "median [IQR]", "best", "evaluations", "failed",
                        "median s / evaluation"], summary_rows), ""]
    lines += ["## Pairwise tests (final incumbent over seeds)", "",
              "Mann–Whitney U (seeds as independent samples) with Cliff's δ = P(a > b) − P(a < b); Wilcoxon "
              "signed-rank paired by seed with the matched-pairs rank-biserial r. Positive effect: the first "
              "strategy is better. p-values Holm-corrected within each test over all pairs.", "",
              md_table(["pair", "median a", "median b", "U", "p", "p (Holm)", "Cliff's δ", "pairs", "p", "p (Holm)", "r"],
                       test_rows), ""]
    lines += ["## Cost vs quality", "", _img("pareto_flops", f"{metric} vs FLOPs"), "", _img("pareto_params", f"{metric} vs params"),
              "", "Costs are the evaluator's own (at its feature size) when it measured them, else analytic at the "
              "paper's Table 1 setting (65×129 map, 320 → 256 channels).", ""]
    lines += [f"## What the top {len(top_cells)} cells are made of", "", _img("choices", "choice frequencies"), ""]
    lines += [f"## Best {len(best_cells)} cells", "", _img("best_cell", "best cell"), "",
              md_table(["#", metric, "found by", "cell", "params", "FLOPs", "params (Table 1)", "GFLOPs (Table 1)"], best_rows),
              "", "<details><summary>DeepLab JSON of these cells</summary>", ""]
    lines += [f"{row['rank']}. `{row['json']}`" for row in data["best_cells"]]
    lines += ["", "</details>", ""]
    for cs, rep, _fig in corr_sections:
        lines += [f"## Proxy vs full task: `{cs.name}`", "", _img(f"{cs.name}/correlation", "proxy vs full"), "",
                  "```", format_table(rep), "```", "",
                  "Bootstrap 95% intervals (BCa, pairs resampled). prec@k: share of the proxy's k best that are among "
                  "the full task's k best. The paper reports Spearman ρ = 0.46 on its top 50 cells.", ""]
    commands = [s.command for s in exp.searches + exp.references + exp.correlations if s.command]
    commands = list(dict.fromkeys(commands))
    if command:
        commands.append(command)
    data["commands"] = commands
    lines += ["## Commands", "", "```sh", *commands, "```", ""]
    (out / "report.md").write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps(data, indent=1, default=_json_default))
    return data


def _img(stem: str, alt: str) -> str:
    return f"![{alt}]({stem}.png) ([SVG]({stem}.svg))"


def _plot_correlation(rep, cdir: Path) -> list[str]:
    from .correlate import plot

    return plot(rep, cdir / "correlation")["files"] if rep.rows else []


def _json_default(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return str(v)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", required=True, help="journal file or database URL")
    p.add_argument("--out", required=True, help="output folder (report.md, report.json, figures)")
    p.add_argument("--experiment", default=None, help="experiment name (needed when the storage holds several)")
    p.add_argument("--budget", type=int, default=None, help="evaluations compared (default: the studies' budget)")
    p.add_argument("--top", type=int, default=20, help="top distinct cells for the choice-frequency figure")
    p.add_argument("--best", type=int, default=5, help="best cells listed")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    from strategies.run import out_dir_problem

    problem = out_dir_problem(args.out, "--out")  # before reading the storage and drawing every figure
    if problem:
        p.error(problem)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        build(args.storage, args.out, args.experiment, args.budget, args.top, args.best,
              command="python -m analysis.report " + shlex.join(argv))
    except (AnalysisError, ValueError) as e:
        p.error(str(e))
    except OSError as e:  # e.g. a read-only file system, a full disk
        p.error(f"cannot write the report under {args.out}: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
    print(f"wrote {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
