"""Which search strategy finds better cells for the same budget?

``python -m benchmarks.compare --strategies random,local,evolution,tpe --seeds 5 --budget 50``
runs one study per (strategy, seed) in one storage (``{experiment}-{strategy}-seed{seed}``,
resumable: rerun the command to continue; ``--workers`` processes per study), evaluates
the zoo's reference cells with the same objective (``{experiment}-reference``), re-trains
each study's incumbent (best by val) with ``--reeval-seeds`` fresh seeds scored on the test
split (``{study}-incumbent``, ``strategies.incumbent``; the reference cells are trained with
the same fresh seeds), then writes the report (``analysis.report``: figures, summary with
val and test, pairwise tests on the test values) and prints the summary table. ``--objective synthetic`` (default) runs in seconds; ``--objective proxy``
trains every cell (about a minute an evaluation on the ``cpu`` config of a 2-core machine).

``--objective bench`` (DPC-Bench's recorded evaluations, milliseconds each) runs each study in memory
and copies it whole into the storage when it is done, ``--jobs`` studies at once (default: one per
core): a journal write per trial attribute would cost more than the evaluation. A rerun skips the
studies already stored; one cut short by a crash is dropped and run again (seeded: the same result).
"""
from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_REFERENCES = ("aspp", "top1_cityscapes")


def parser() -> argparse.ArgumentParser:
    from strategies.incumbent import DEFAULT_REEVAL_SEEDS
    from strategies.run import add_strategy_flags, int_in, setting_type

    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategies", default="random,local,evolution,tpe", help="comma-separated (default: all four)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per strategy: 0 .. N-1 (+ --first-seed) (default 5)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--budget", type=int, default=None, help="evaluations per study (default: the objective's default: "
                   "16 for proxy on cpu, 100 for synthetic)")
    p.add_argument("--objective", default="synthetic", help="synthetic[:NAME,key=value] | bench[:data=DIR] | proxy | full | module:callable "
                   "(default synthetic)")
    p.add_argument("--config", default=None, help="evaluator config for proxy/full: test | cpu | paper "
                   "(default cpu, on GPUs too)")
    p.add_argument("--eval-seed", type=int, default=None, help="training seed of every evaluation (default: the config's)")
    p.add_argument("--experiment", default=None, help="experiment name (default compare-{objective name}, e.g. "
                   "compare-proxy-cpu)")
    p.add_argument("--storage", default=None, help="journal file or database URL (default runs/{experiment}.journal)")
    p.add_argument("--out", default=None, help="report folder (default runs/{experiment})")
    p.add_argument("--workers", type=int, default=1, help="worker processes per study (default 1)")
    p.add_argument("--jobs", type=int, default=None, help="bench objective: studies run at once, each in its own process "
                   "(default: one per core)")
    p.add_argument("--dedupe", action="store_true", help="reuse the value of an already evaluated equivalent cell")
    p.add_argument("--references", default=",".join(DEFAULT_REFERENCES),
                   help="zoo cells evaluated as reference lines (default aspp,top1_cityscapes; '' for none)")
    p.add_argument("--reeval-seeds", type=int_in(0, 1000, "a non-negative integer"), default=DEFAULT_REEVAL_SEEDS,
                   help="re-train each study's incumbent (best by val) with this many fresh seeds, scored on the test "
                   "split, and train the reference cells with the same seeds (objectives with a test split: proxy, "
                   f"full; 0: skip; default {DEFAULT_REEVAL_SEEDS})")
    p.add_argument("--no-report", action="store_true", help="run the studies only")
    p.add_argument("--dataset", default=None, help="proxy/full data: scenes[:PRESET] (default), voc:PATH or cityscapes:PATH")
    add_strategy_flags(p.add_argument_group("strategy settings (as in strategies.run; each applies to its own strategy)"))
    from strategies.pruners import PRUNERS, pruner_settings
    from strategies.run import positive_int
    from strategies.settings import BUDGET_UNITS

    g = p.add_argument_group("pruning (strategies.pruners; each (strategy, pruner) pair is one arm of the comparison)")
    g.add_argument("--pruners", default="none", help=f"comma-separated, each run with every strategy: {', '.join(PRUNERS)} "
                   "(default none)")
    g.add_argument("--budget-in", dest="budget_unit", choices=BUDGET_UNITS, default="evaluations",
                   help="count --budget in trials (default) or in full-evaluation equivalents (pruned trials cost their "
                   "part: arms compared at equal compute)")
    g.add_argument("--eval-every", type=positive_int, default=None, help="proxy/full: val mIOU every N steps for the "
                   "pruner (default: the config's, or a sixth of the training when it evaluates only at the end)")
    for setting in pruner_settings().values():
        users = "/".join(name for name, pr in PRUNERS.items() if setting in pr.settings)
        g.add_argument(setting.flag, dest=setting.name, type=setting_type(setting), help=f"{users}: {setting.help}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def _validate(p: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from strategies.registry import STRATEGIES

    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    if not names or unknown:
        p.error(f"unknown strategy {', '.join(unknown) or '(none given)'}; known: {', '.join(STRATEGIES)}")
    if len(set(names)) != len(names):
        p.error("--strategies lists a strategy twice")
    if args.seeds < 1 or args.first_seed < 0:
        p.error("--seeds must be >= 1 and --first-seed >= 0")
    if args.budget is not None and args.budget < 1:
        p.error("--budget must be >= 1")
    if args.workers < 1:
        p.error("--workers must be >= 1")
    if args.jobs is not None and args.jobs < 1:
        p.error("--jobs must be >= 1")
    from strategies.pruners import PRUNERS

    args.pruner_list = [x.strip() for x in args.pruners.split(",") if x.strip()]
    bad = [x for x in args.pruner_list if x not in PRUNERS]
    if not args.pruner_list or bad or len(set(args.pruner_list)) != len(args.pruner_list):
        p.error(f"--pruners: unknown or repeated pruner {', '.join(bad) or args.pruners!r}; known: {', '.join(PRUNERS)}")
    from dpc.zoo import ZOO

    refs = [r.strip() for r in args.references.split(",") if r.strip()]
    bad = [r for r in refs if r not in ZOO]
    if bad:
        p.error(f"unknown reference cell {', '.join(bad)}; known: {', '.join(ZOO)}")
    return names, refs


class Overall:
    """One progress bar over every evaluation of the comparison."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="compare", unit="eval", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
        self.base = 0

    def study(self, label: str, budget: int):
        self.bar.set_description(label)

        def update(status) -> None:
            self.bar.n = self.base + min(status.used, budget)
            best = "-" if status.best is None else f"{status.best:.4f}"
            self.bar.set_postfix_str(f"best {best}", refresh=False)
            self.bar.refresh()

        return update

    def done(self, budget: int) -> None:
        self.base += budget
        self.bar.n = self.base
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def pruning_for(pruner: str, args: argparse.Namespace) -> dict[str, Any]:
    """``strategies.search`` keywords of one pruner arm: the pruner, the settings of it given as flags."""
    from strategies.pruners import get_pruner

    params = {s.name: getattr(args, s.name) for s in get_pruner(pruner).settings if getattr(args, s.name, None) is not None}
    return {"pruner": pruner, "pruner_params": params, "budget_unit": args.budget_unit, "eval_every": args.eval_every}


def arm_study(experiment: str, name: str, pruner: str, seed: int) -> str:
    return f"{experiment}-{name}-seed{seed}" if pruner == "none" else f"{experiment}-{name}-{pruner}-seed{seed}"


def settings_for(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The explicit strategy settings that apply to ``name`` (the rest: budget-scaled defaults)."""
    from strategies.registry import get_strategy

    return {s.name: getattr(args, s.name) for s in get_strategy(name).settings
            if s.flag and getattr(args, s.name, None) is not None}


def run(args: argparse.Namespace, argv: list[str], names: list[str], refs: list[str]) -> dict[str, Any]:
    from dpc.zoo import zoo_cell
    from strategies.cells import Cell, evaluate_cells
    from strategies.incumbent import FRESH_SEED_BASE, reevaluate_incumbent
    from strategies.objectives import resolve_objective

    obj = resolve_objective(args.objective, config=args.config, eval_seed=args.eval_seed, dataset=args.dataset,
                            eval_every=args.eval_every)
    from strategies.pruners import eval_every_for

    for pruner in args.pruner_list:
        every = eval_every_for(obj, pruner, args.eval_every)
        if every != args.eval_every:
            print(f"pruner {pruner}: config {obj.config} evaluates only at the end; reporting val mIOU every {every} "
                  f"steps (--eval-every {every})")
            args.eval_every = every
            obj = resolve_objective(args.objective, config=args.config, eval_seed=args.eval_seed, dataset=args.dataset,
                                    eval_every=every)
    experiment = args.experiment or f"compare-{obj.name}" + ("-equivalents" if args.budget_unit == "equivalents" else "")
    storage = args.storage or str(Path("runs") / f"{experiment}.journal")
    out = Path(args.out or Path("runs") / experiment)
    budget = args.budget or obj.default_budget
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    command = "python -m benchmarks.compare " + shlex.join(argv)
    # One process evaluates everything with workers=1: resolve (and prepare) the evaluator once.
    objective: Any = obj if args.workers == 1 else args.objective
    print(f"experiment {experiment}: {', '.join(names)} x seeds {seeds[0]}..{seeds[-1]} x {budget} evaluations, "
          f"objective {obj.spec}{f' (config {obj.config})' if obj.config else ''}, storage {storage}")
    reeval = args.reeval_seeds if obj.has_test else 0
    if args.reeval_seeds and not obj.has_test:
        print(f"objective {obj.spec} has no test split: incumbents are not re-trained (--reeval-seeds ignored); the "
              f"report compares val values")
    # Each reference trains once with the searches' seed (its val is what a search would have seen) and,
    # with a test split, with the incumbents' fresh seeds too (its test value beside theirs).
    fresh = [None] + [FRESH_SEED_BASE + i for i in range(reeval)]
    t0 = time.time()
    if refs:
        cells = [Cell(zoo_cell(r), {"reference": r}, seed=seed) for r in refs for seed in fresh]
        evaluate_cells(
            storage, f"{experiment}-reference", cells, objective,
            config=obj.config, eval_seed=args.eval_seed, workers=min(args.workers, len(cells)), progress=not args.quiet,
            dataset=args.dataset,
            study_attrs={"kind": "reference", "experiment": experiment, "objective": obj.spec, "config": obj.config,
                         "command": command},
        )
    bar = Overall(len(names) * len(args.pruner_list) * len(seeds) * budget, not args.quiet)
    results = []
    in_memory = obj.simulated and args.workers == 1
    if in_memory:
        results = run_in_memory(args, obj, names, seeds, budget, storage, experiment, command, bar, reeval)
    else:
        results = run_studies(args, objective, names, seeds, budget, storage, experiment, command, bar)
    print(f"{len(results)} studies done in {time.time() - t0:.1f} s")
    if reeval and not in_memory:  # in-memory jobs re-evaluated their incumbents already
        t1 = time.time()
        print(f"re-training each study's incumbent with {reeval} fresh seeds, scored on the test split...", flush=True)
        for study, settings in results:  # a queue per study ({study}-incumbent): a rerun re-trains nothing already done
            rep = reevaluate_incumbent(study, settings, objective, reeval, progress=not args.quiet)
            if rep is not None:
                logging.getLogger(__name__).info("%s: val %.4f, %s", study.study_name, rep.val, rep.line(obj.metric))
        print(f"{len(results)} incumbents re-trained in {time.time() - t1:.1f} s")
    if args.no_report:
        return {}
    from analysis.report import build

    data = build(storage, out, experiment, budget, command=command)
    print(summary_text(data))
    print(f"report: {out / 'report.md'}")
    return data


def run_studies(args, objective, names, seeds, budget, storage, experiment, command, bar) -> list:
    import strategies

    results = []
    try:
        for seed in seeds:  # seeds outermost: an interrupted comparison stays balanced
            for name, pruner in ((n, pr) for n in names for pr in args.pruner_list):
                res = strategies.search(
                    objective, strategy=name, budget=budget, seed=seed, storage=storage, experiment=experiment,
                    config=args.config, eval_seed=args.eval_seed, workers=args.workers, dedupe=args.dedupe,
                    dataset=args.dataset, study=arm_study(experiment, name, pruner, seed), **pruning_for(pruner, args),
                    strategy_params=settings_for(name, args) or None, command=command, on_progress=bar.study(f"{name} seed {seed}", budget),
                )
                bar.done(budget)
                results.append((res.study, res.settings))
                logging.getLogger(__name__).info("%s seed %d: best %s", name, seed, res.best_value)
    finally:
        bar.close()
    return results


def _stored(storage: str, study_name: str, budget: int):
    """The stored study if it has its whole budget; a partial one (a copy cut short) is deleted."""
    import optuna

    from strategies.study import budget_status

    handle = _handle(storage)
    if not any(s.study_name == study_name for s in handle.storage.get_all_studies()):
        return None
    study = optuna.load_study(study_name=study_name, storage=handle.storage)
    if budget_status(study).spent(study.user_attrs.get("budget_unit", "evaluations")) >= budget and "strategy_params" in study.user_attrs:
        return study
    optuna.delete_study(study_name=study_name, storage=handle.storage)
    return None


_RESOLVED: dict = {}
_HANDLES: dict = {}


def _handle(storage: str):
    """One storage handle per process: a journal is replayed whole when opened, so a job that opened
    it per study would read the growing file again and again (quadratic); a kept one reads on."""
    from strategies.storage import open_storage

    if storage not in _HANDLES:
        _HANDLES[storage] = open_storage(storage)
    return _HANDLES[storage]


def simulated_study(args: argparse.Namespace, name: str, pruner: str, seed: int, budget: int, storage: str,
                    experiment: str, command: str, reeval: int, objective: Any = None) -> str:
    """One study of a replayed objective and its incumbent's re-evaluation (``{study}-incumbent``): run
    in memory, then copied whole into ``storage``, the companion first (a stored search study is done)."""
    import strategies
    from strategies.optuna_adapter import storage_of

    study_name = arm_study(experiment, name, pruner, seed)
    if _stored(storage, study_name, budget) is not None:
        return study_name
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if objective is None:  # a job process: resolve the objective once per process
        from strategies.objectives import resolve_objective

        key = (args.objective, args.config, args.eval_seed)
        if key not in _RESOLVED:
            _RESOLVED[key] = resolve_objective(args.objective, config=args.config, eval_seed=args.eval_seed)
        objective = _RESOLVED[key]
    res = strategies.search(
        objective, strategy=name, budget=budget, seed=seed, storage=None,
        experiment=experiment, config=args.config, eval_seed=args.eval_seed, dedupe=args.dedupe,
        strategy_params=settings_for(name, args) or None, command=command, study=study_name, **pruning_for(pruner, args),
    )
    from strategies.incumbent import companion_name, reevaluate_incumbent

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if reeval:
        reevaluate_incumbent(res.study, res.settings, objective, reeval)
    target = _handle(storage).storage
    if reeval:
        companion = companion_name(study_name)
        if any(s.study_name == companion for s in target.get_all_studies()):
            optuna.delete_study(study_name=companion, storage=target)
        compact_copy(companion, storage_of(res.study), target)
    compact_copy(study_name, storage_of(res.study), target)
    return study_name


def compact_copy(study_name: str, source, target) -> None:
    """``optuna.copy_study`` without what a finished replayed study never needs again: the params
    and their distributions (each op's 81 choices: 83% of a trial's journal line, 7.5 of 9.1 kB;
    the genome string in the user attributes says the same) and the genome's JSON form. A stored
    study is read (analysis.load), never resumed: a cut-short copy is deleted and run again."""
    import optuna

    src = optuna.load_study(study_name=study_name, storage=source)
    dst = optuna.create_study(study_name=study_name, storage=target, directions=src.directions)
    for key, value in src.user_attrs.items():
        dst.set_user_attr(key, value)
    for key, value in source.get_study_system_attrs(src._study_id).items():
        target.set_study_system_attr(dst._study_id, key, value)
    trials = []
    for t in src.get_trials(deepcopy=False):
        attrs = {k: v for k, v in t.user_attrs.items() if k != "json"}
        trials.append(optuna.trial.FrozenTrial(
            number=t.number, state=t.state, value=None, values=t.values, datetime_start=t.datetime_start,
            datetime_complete=t.datetime_complete, params={}, distributions={}, user_attrs=attrs,
            system_attrs={k: v for k, v in t.system_attrs.items() if k != "fixed_params"},
            intermediate_values=t.intermediate_values, trial_id=t._trial_id))
    dst.add_trials(trials)


def run_in_memory(args, obj, names, seeds, budget, storage, experiment, command, bar, reeval) -> list:
    """Every (strategy, seed) study of a replayed objective, ``--jobs`` processes at once."""
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    import optuna

    from strategies.settings import SearchSettings
    from strategies.storage import open_storage

    jobs = args.jobs or os.cpu_count() or 1
    todo = [(name, pruner, seed) for seed in seeds for name in names for pruner in args.pruner_list]
    try:
        if jobs == 1:
            for name, pruner, seed in todo:
                bar.study(f"{name} seed {seed}", budget)
                simulated_study(args, name, pruner, seed, budget, storage, experiment, command, reeval, obj)
                bar.done(budget)
        else:
            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(simulated_study, args, name, pruner, seed, budget, storage, experiment, command, reeval)
                           for name, pruner, seed in todo]
                for f in as_completed(futures):
                    f.result()
                    bar.done(budget)
    finally:
        bar.close()
    handle = open_storage(storage)
    out = []
    for name, pruner, seed in todo:
        study = optuna.load_study(study_name=arm_study(experiment, name, pruner, seed), storage=handle.storage)
        settings = SearchSettings.of(strategy=name, seed=seed, budget=budget, objective=obj.spec, config=args.config,
                                     eval_seed=args.eval_seed, storage=storage, experiment=experiment,
                                     study=study.study_name, **pruning_for(pruner, args))
        out.append((study, settings))
    return out


def summary_text(data: dict[str, Any]) -> str:
    """The report's summary and pairwise tables as plain text."""
    metric = data["metric"]
    test = any(row.get("test") for row in data["summary"].values()) or any(r.get("test") for r in data["references"])
    unit = "full-evaluation equivalents" if data.get("budget_unit") == "equivalents" else "evaluations"
    w = max([10] + [len(s) for s in data["summary"]])
    pruned = any(row.get("pruned") for row in data["summary"].values())
    lines = [f"final best val {metric} after {data['budget']} {unit} (over seeds)"
             + (", and the incumbents' test value re-trained with fresh seeds:" if test else ":"),
             f"{'strategy':<{w}} {'seeds':>5}  {'mean':>7} {'std':>7}  {'median':>7}  {'IQR':>17}  {'failed':>6}"
             + (f"  {'pruned':>6}" if pruned else "")
             + (f"  {'test mean':>9} {'std':>7} {'n':>3}" if test else "")]
    for s, row in data["summary"].items():
        t = row.get("test")
        lines.append(f"{s:<{w}} {row['n']:>5}  {row['mean']:>7.4f} {row['std']:>7.4f}  {row['median']:>7.4f}  "
                     f"[{row['q25']:.4f}, {row['q75']:.4f}]  {row['failures']:>6}"
                     + (f"  {row.get('pruned', 0):>6}" if pruned else "")
                     + ((f"  {t['mean']:>9.4f} {t['std']:>7.4f} {t['n']:>3}" if t else f"  {'n/a':>9}") if test else ""))
    for ref in data["references"]:
        lines.append(f"{'ref ' + ref['name']:<{w + 8}}{ref['value']:>7.4f}" + (
            f"{'':>{45 + (8 if pruned else 0)}}{ref['test_mean']:>9.4f} {ref['test_std']:>7.4f} {len(ref['test']):>3}"
            if ref.get("test") else ""))
    lines += ["", f"pairwise on {data.get('pairwise_basis', 'val')}", "(Mann-Whitney U, Cliff's delta; Wilcoxon by "
              "seed, rank-biserial r; Holm-corrected p):"]
    for t in data["pairwise"]:
        r = t["wilcoxon_r"]
        lines.append(f"{t['a'] + ' vs ' + t['b']:<{2 * w + 4}} delta {t['cliffs_delta']:+.2f}  p {_p(t['mw_p_holm'])}   "
                     f"r {'n/a' if r is None or r != r else f'{r:+.2f}'}  p {_p(t['wilcoxon_p_holm'])}")
    if data.get("pruner_effects"):
        lines += ["", "each pruner against none, per strategy (Wilcoxon by seed, Holm over these comparisons):"]
        for t in data["pruner_effects"]:
            lines.append(f"{t['a']:<{w}} vs none: median {t['median_a']:.4f} vs {t['median_b']:.4f} "
                         f"({t['median_a'] - t['median_b']:+.4f})  p {_p(t['wilcoxon_p_holm'])}")
    return "\n".join(lines)


def _p(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    names, refs = _validate(p, args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from analysis.load import AnalysisError
    from strategies.objectives import ObjectiveError
    from strategies.storage import StorageError
    from strategies.study import SearchError

    try:
        run(args, argv, names, refs)
    except (ObjectiveError, StorageError, SearchError, AnalysisError, ValueError) as e:
        p.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
