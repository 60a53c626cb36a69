"""One Markdown page from a storage: figures, tables, best cells and the commands behind them.

``python -m analysis.report --storage runs/compare.log --out runs/report`` reads the
search studies of one experiment (``{experiment}-{strategy}-seed{seed}``), their incumbents'
re-trainings (``{study}-incumbent``: the best cell by val re-trained with fresh seeds and
scored on the test split, ``strategies.incumbent``), its reference study
(``{experiment}-reference``: the zoo cells under the same objective) and any correlation
study made from them (``analysis.correlate``), and writes ``report.md``,
``report.json`` and every figure as PNG and SVG. Everything is recomputed from the
storage, so the page can be regenerated at any time, e.g. while a comparison still runs.

Val is what a search saw and selected on; test is what the page reports (DESIGN.md, "The
evaluation protocol"): the summary shows both, and the pairwise tests run on the per-seed
test means when every study has them (else on val, and the page says so).
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

from .load import (
    AnalysisError,
    StudyRecord,
    TrialRecord,
    best_complete,
    canonical_hash,
    experiment_names,
    is_search,
    load_all,
    read_storage,
)

log = logging.getLogger(__name__)

REFERENCE_KIND, CORRELATION_KIND, INCUMBENT_KIND = "reference", "correlation", "incumbent"


@dataclass
class Experiment:
    """The studies of one experiment, split by role."""

    name: str
    searches: list[StudyRecord] = field(default_factory=list)
    references: list[StudyRecord] = field(default_factory=list)
    correlations: list[StudyRecord] = field(default_factory=list)
    incumbents: list[StudyRecord] = field(default_factory=list)  # re-trainings of the searches' incumbents
    records: list[TrialRecord] = field(default_factory=list)  # of the search studies
    reference_records: list[TrialRecord] = field(default_factory=list)
    incumbent_records: list[TrialRecord] = field(default_factory=list)

    @property
    def objective(self) -> str:
        objs = sorted({str(s.objective) for s in self.searches if s.objective})
        return ", ".join(objs) or "?"

    @property
    def metric(self) -> str:
        """Axis label: an evaluator's value is an mIOU, a synthetic objective's a score."""
        objs = self.objective.split(", ")
        if all(o in ("proxy", "full") or o.split(":")[0] == "bench" for o in objs):
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
        elif ua.get("kind") == INCUMBENT_KIND and ua.get("source_study") in search_names:
            exp.incumbents.append(s)
    ref_names = {s.name for s in exp.references}
    inc_names = {s.name for s in exp.incumbents}
    exp.records = [r for r in records if r.study in search_names]
    exp.reference_records = [r for r in records if r.study in ref_names]
    exp.incumbent_records = [r for r in records if r.study in inc_names]
    if not any(r.complete for r in exp.records):
        raise AnalysisError(f"experiment {experiment!r} has no complete trial yet")
    return exp


def test_value(r: TrialRecord) -> float | None:
    """The trial's test-split value (``test_miou``), None when it has none."""
    v = r.user_attrs.get("test_miou")
    try:
        v = None if v is None or isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None
    return v if v is not None and math.isfinite(v) else None


def references(exp: Experiment) -> list:
    """Each reference cell: val = its evaluation with the searches' training seed (the mean if
    several; over every evaluation when none had that seed), the value a search would have
    seen; test = the test value of each training with a fresh seed (``eval_seed``; of every
    training when none had one), as the incumbents' re-trainings."""
    from .plots import Reference

    by: dict[str, list[TrialRecord]] = defaultdict(list)
    for r in exp.reference_records:
        if r.complete:
            by[str(r.user_attrs.get("reference", r.genome))].append(r)
    out = []
    for name, recs in by.items():
        seeded = [r for r in recs if r.user_attrs.get("eval_seed") is not None and test_value(r) is not None]
        tests = [test_value(r) for r in sorted(seeded, key=lambda r: r.user_attrs["eval_seed"])] or \
                [v for v in map(test_value, recs) if v is not None]
        plain = [r for r in recs if r.user_attrs.get("eval_seed") is None] or recs
        out.append(Reference(name, float(np.mean([r.value for r in plain])), recs[0].n_params, recs[0].flops, recs[0].genome,
                             tests or None))
    order = {"aspp": 0, "top1_cityscapes": 1}
    return sorted(out, key=lambda ref: (order.get(ref.name, 9), ref.name))


def incumbent_tests(exp: Experiment, budget: int | None) -> dict[str, dict[int, dict[str, Any]]]:
    """``inc[strategy][seed]``: the search's incumbent after ``budget`` evaluations (best by val)
    and its re-trainings from the companion study: ``test`` and ``val_retrained`` per fresh
    seed (empty lists when it was not re-trained: no test split, ``--reeval-seeds 0``, or not
    yet, e.g. a report at a smaller budget than the one the re-trained incumbent won at)."""
    from .curves import incumbents

    retrained: dict[tuple[str, str], list[TrialRecord]] = defaultdict(list)
    source = {s.name: s.user_attrs.get("source_study") for s in exp.incumbents}
    for r in exp.incumbent_records:
        if r.complete and test_value(r) is not None:
            key = r.genome_hash or canonical_hash(r.genome)
            if key is not None:
                retrained[(str(source.get(r.study)), str(key))].append(r)
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for strategy, by_seed in incumbents(exp.records, budget).items():
        for seed, best in by_seed.items():
            key = best.genome_hash or canonical_hash(best.genome)
            recs = [] if key is None else retrained.get((best.study, str(key)), [])
            recs = sorted(recs, key=lambda r: r.user_attrs.get("eval_seed", 0))
            tests = [test_value(r) for r in recs]
            out.setdefault(strategy, {})[seed] = {
                "study": best.study, "trial": best.number, "genome": best.genome, "val": best.value,
                "seeds": [r.user_attrs.get("eval_seed") for r in recs], "test": tests,
                "val_retrained": [r.value for r in recs],
                "test_mean": float(np.mean(tests)) if tests else None,
                "test_std": (float(np.std(tests, ddof=1)) if len(tests) > 1 else 0.0) if tests else None,
            }
    return out


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
    from .stats import pairwise_tests, pruner_effects, summarize

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    exp = load_experiment(storage, experiment)
    refs = references(exp)
    metric = exp.metric
    budgets = [s.budget for s in exp.searches if s.budget]
    budget = budget or (min(budgets) if budgets else None)
    runs = runs_from_records(exp.records)
    # A budget in full-evaluation equivalents (pruned trials cost their part) ended each study at equal
    # compute, after different numbers of evaluations: its incumbent is the whole study's.
    by_compute = any(s.user_attrs.get("budget_unit") == "equivalents" for s in exp.searches)
    final = final_values(runs, None if by_compute else budget)
    inc = incumbent_tests(exp, None if by_compute else budget)
    data: dict[str, Any] = {"experiment": exp.name, "objective": exp.objective, "metric": metric, "budget": budget,
                            "budget_unit": "equivalents" if by_compute else "evaluations",
                            "references": [r.to_dict() for r in refs], "incumbents": inc}
    n_studies = sum(len(v) for v in runs.values())
    n_tested = sum(bool(inc.get(s, {}).get(seed, {}).get("test")) for s, by_seed in runs.items() for seed in by_seed)
    any_test = n_tested > 0 or any(r.test for r in refs)
    fig: dict[str, Any] = {}
    fig["best_so_far"] = plots.plot_best_so_far(runs, out / "best_so_far", references=refs, budget=budget,
                                                ylabel=f"best {metric} so far")
    fig["best_so_far_time"] = plots.plot_best_so_far(runs, out / "best_so_far_time", x="seconds", references=refs,
                                                     ylabel=f"best {metric} so far")
    pruned = any(r.state == "PRUNED" for r in exp.records)
    if pruned or by_compute:
        fig["best_so_far_compute"] = plots.plot_best_so_far(runs, out / "best_so_far_compute", x="compute",
                                                            references=refs, ylabel=f"best {metric} so far")
    fig["final_best"] = plots.plot_final_best(final, out / "final_best", references=refs,
                                              ylabel=f"best {metric} after {budget} evaluations" if budget else f"best {metric}")
    if n_tested:
        fig["test_values"] = plots.plot_test_values(inc, out / "test_values", references=refs, metric=metric)
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
    final_test: dict[str, dict[int, float]] = {}
    for strategy, by_seed in runs.items():
        s = summarize(list(final[strategy].values()))
        evals = [len(r.values) for r in by_seed.values()]
        states = [r.state for r in exp.records if r.strategy == strategy and r.spent]
        fails = [states.count("FAIL")]
        n_pruned = states.count("PRUNED")
        durations = [r.duration for r in exp.records if r.strategy == strategy and r.duration is not None and r.finished]
        tested = {seed: i for seed, i in inc.get(strategy, {}).items() if i["test"] and seed in by_seed}
        final_test[strategy] = {seed: i["test_mean"] for seed, i in tested.items()}
        t = summarize(list(final_test[strategy].values()))
        k = sorted({len(i["test"]) for i in tested.values()})
        within = float(np.mean([i["test_std"] for i in tested.values()])) if tested else None
        data["summary"][strategy] = {**s.to_dict(), "evaluations": evals, "failures": sum(fails), "pruned": n_pruned,
                                     "median_seconds_per_evaluation": float(np.median(durations)) if durations else None,
                                     "test": t.to_dict() if tested else None, "test_seeds_per_incumbent": k,
                                     "test_within_std": within}
        row = [strategy, s.n, f"{s.mean:.4f} ± {s.std:.4f}", f"{s.median:.4f} [{s.q25:.4f}, {s.q75:.4f}]", _fmt(s.best)]
        if any_test:
            row += [f"{t.mean:.4f} ± {t.std:.4f}" if tested else "–", f"{len(tested)}/{s.n}",
                    "–" if not k else (str(k[0]) if len(k) == 1 else f"{k[0]}–{k[-1]}"), _fmt(within)]
        summary_rows.append(row + [f"{min(evals)}–{max(evals)}" if min(evals) != max(evals) else str(evals[0]),
                                   sum(fails), _fmt(data["summary"][strategy]["median_seconds_per_evaluation"], 2)])
    on_test = n_studies > 0 and n_tested == n_studies
    if on_test:
        basis = (f"the incumbents' **test {metric}** (one value per search seed: the mean over its fresh-seed "
                 f"re-trainings, scored on the test split the search never saw)")
    elif n_tested:
        basis = (f"the **val {metric}** the searches saw: only {n_tested} of {n_studies} incumbents have test values so "
                 f"far (rerun `benchmarks.compare` to finish their re-training)")
    else:
        basis = (f"the **val {metric}** the searches saw (no incumbent was re-trained on a test split: the objective has "
                 f"none, or `--reeval-seeds 0`)")
    data["pairwise_values"] = "test" if on_test else "val"
    data["pairwise_basis"] = basis.replace("**", "").replace("`", "")
    tests = pairwise_tests(final_test if on_test else final)
    data["pairwise"] = [t.to_dict() for t in tests]
    effects = pruner_effects(final_test if on_test else final)
    data["pruner_effects"] = [t.to_dict() for t in effects]
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

    inc_rows = [[f"{s} s{seed}", f"#{i['trial']}", _fmt(i["val"]),
                 f"{i['test_mean']:.4f} ± {i['test_std']:.4f}" if i["test"] else "–", len(i["test"]),
                 _fmt(float(np.mean(i["val_retrained"]))) if i["val_retrained"] else "–", f"`{i['genome']}`"]
                for s, by_seed in inc.items() for seed, i in by_seed.items()]
    ref_test = any(r.test for r in refs)
    ref_rows = [[r.name, _fmt(r.value)] + ([f"{r.test_mean:.4f} ± {r.test_std:.4f}" if r.test else "–", len(r.test or [])]
                                           if ref_test else []) + [f"`{r.genome}`"] for r in refs]

    # -- the page -----------------------------------------------------------------------------------
    lines = [f"# Strategy comparison: `{exp.name}`", ""]
    ref_text = ", ".join(f"{r.name} = {r.value:.4f}" + (f" (test {r.test_mean:.4f})" if r.test else "") for r in refs)
    lines += [f"Objective: **{exp.objective}** (config {', '.join(sorted({str(s.config) for s in exp.searches}))}); "
              f"budget **{budget}** evaluations; {len(exp.searches)} studies "
              f"({', '.join(f'{k} × {len(v)} seeds' for k, v in runs.items())}). "
              f"Each search's incumbent is the best val {metric} it observed (one training each: an optimistic "
              f"number); " + (f"{n_tested} of {n_studies} incumbents were re-trained with fresh seeds and scored on the "
              f"test split the search never saw (the value to report). " if any_test else
              "no incumbent has a test value (the objective has no test split, or `--reeval-seeds 0`). ") +
              f"Reference cells ({ref_text or 'none evaluated'}) were evaluated with the same objective.", ""]
    lines += ["## Best so far (val)", "", _img("best_so_far", "best so far vs evaluations"), "",
              _img("best_so_far_time", "best so far vs wall-clock time"), ""]
    if "best_so_far_compute" in fig:
        lines += [_img("best_so_far_compute", "best so far vs compute"), "",
                  "Compute counts full-evaluation equivalents: a trial pruned at step s of S costs s/S. "
                  + ("Every study stopped at the same compute (`--budget-in equivalents`), so the tables below "
                     "compare at equal compute." if by_compute else ""), ""]
    header = ["strategy", "seeds", "val mean ± std", "val median [IQR]", "val best"]
    if any_test:
        header += ["test mean ± std", "re-trained", "seeds each", "test std within"]
    lines += ["## Final incumbent per strategy", "", _img("final_best", "final best (val) per strategy"), "",
              md_table(header + ["evaluations", "failed", "median s / evaluation"], summary_rows), ""]
    if any_test:
        lines += [f"val: the final best {metric} per search seed (what the search saw and selected on). test: each "
                  f"seed's incumbent re-trained with fresh seeds and scored on the test split, averaged over its "
                  f"re-trainings, then mean ± std over the search seeds; \"test std within\": the mean seed-to-seed "
                  f"std of one incumbent's re-trainings (training noise).", ""]
    if n_tested:
        lines += ["## Incumbents on the test split", "",
                  _img("test_values", "val that selected each incumbent, and its test value"), "",
                  md_table(["search", "trial", "val (selected it)", "test mean ± std", "seeds", "val re-trained", "cell"],
                           inc_rows), "",
                  "\"val re-trained\": the same cell's val over the fresh seeds; its gap to the selecting val is the "
                  "optimism of picking the maximum of noisy evaluations.", ""]
    if refs:
        lines += ["## Reference cells", "", md_table(["reference", "val"] + (["test mean ± std", "seeds"] if ref_test else [])
                                                 + ["cell"], ref_rows), ""]
    lines += ["## Pairwise tests (final incumbent over seeds)", "",
              f"Values tested: {basis}.", "",
              "Mann–Whitney U (seeds as independent samples) with Cliff's δ = P(a > b) − P(a < b); Wilcoxon "
              "signed-rank paired by seed with the matched-pairs rank-biserial r. Positive effect: the first "
              "strategy is better. p-values Holm-corrected within each test over all pairs.", "",
              md_table(["pair", "median a", "median b", "U", "p", "p (Holm)", "Cliff's δ", "pairs", "p", "p (Holm)", "r"],
                       test_rows), ""]
    if effects:
        eff_rows = [[t.b, t.a.partition("+")[2], _fmt(t.median_a), _fmt(t.median_b), f"{t.median_a - t.median_b:+.4f}",
                     t.wilcoxon_pairs, _p(t.wilcoxon_p_holm), f"{t.wilcoxon_r:+.2f}", f"{t.cliffs_delta:+.2f}", _p(t.mw_p_holm)]
                    for t in effects]
        lines += ["## Does a pruner help a strategy? (equal compute)" if by_compute else "## Pruner vs none, per strategy", "",
                  f"Each strategy with a pruner against the same strategy without one, on {basis}; Wilcoxon paired by "
                  "seed (p Holm-corrected over these comparisons) and Mann–Whitney. "
                  + ("Every study stopped at the same compute (`--budget-in equivalents`)." if by_compute else
                     "Budgets count evaluations, not compute: a pruned arm spent less."), "",
                  md_table(["strategy", "pruner", "median with", "median without", "difference", "pairs", "p (Holm)", "r",
                            "Cliff's δ", "MW p (Holm)"], eff_rows), ""]
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
