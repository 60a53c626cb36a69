"""``python -m strategies.run --strategy {random,local,evolution,tpe}``: search, resume, report.

With no other flag: the proxy evaluator on the embedded dataset (config ``cpu``, or
``paper`` on a GPU), the config's default budget, seed 0, study
``{experiment}-{strategy}-seed{seed}`` in the journal file ``runs/{experiment}.journal``
(experiment ``proxy-cpu`` etc.). Re-running the same command resumes the study up to the
budget; ``--workers N`` runs N processes; ``--storage postgresql://...`` shares a study
between machines. At the end it prints the best cell and writes it as DeepLab JSON.

Every flag is checked before the search starts (``parse_args``), with the limits in the
one-line error: ASCII integers and finite decimal numbers within the bounds below, names of
experiments and studies matching NAME_PATTERN, an ``--out-dir`` that is a writable directory or
can be created, and synthetic objective options (``strategies.synthetic``).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import re
import shlex
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, NoReturn

from optuna.trial import TrialState

from dpc.genome import MAX_BRANCHES
from dpc.ops import brief, printable

from .base import Setting
from .incumbent import DEFAULT_REEVAL_SEEDS
from .objectives import one_line
from .registry import STRATEGIES, all_settings
from .settings import NAME_PATTERN, SearchSettings

PROG = "python -m strategies.run"
MAX_COUNT = 1_000_000_000  # budget, top-k, population, tournament, startup trials, failures in a row
MAX_SEED = 2**64 - 1
MAX_WORKERS = 1024  # also threads, and worker indices below it
MAX_RETRY = 1000
MAX_HEARTBEAT = 3600.0  # seconds; also the most --poll
MAX_GRACE = 7 * 24 * 3600.0  # seconds (7 days)


class OneLineParser(argparse.ArgumentParser):
    """Bad flags -> one line on stderr (and exit status 2), not usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {printable(message)} (see --help)\n")


_INT_RE = re.compile(r"\s*[+-]?[0-9]{1,30}\s*", re.ASCII)
_FLOAT_RE = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?\s*", re.ASCII)


def ascii_int(text: str) -> int:
    """int() of ASCII decimal digits only (int() itself takes '١٢' and '1_0'); else ValueError."""
    if not _INT_RE.fullmatch(text):
        raise ValueError(text)
    return int(text)


def finite_float(text: str) -> float:
    """float() of a plain ASCII decimal number that is finite (no 'nan', 'inf', '1e999'); else ValueError."""
    if not _FLOAT_RE.fullmatch(text):
        raise ValueError(text)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str, limits: str = "") -> Callable[[str], Any]:
    """An argparse type: convert, then check, with one message (naming the limits) for both failures."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {brief(text, 40)}" + (f" ({limits})" if limits else ""))
        return value

    return parse


def int_in(lo: int, hi: int, expected: str, hi_text: str | None = None) -> Callable[[str], int]:
    return checked(ascii_int, lambda v: lo <= v <= hi, expected, f"limits {lo}..{hi_text or f'{hi:,}'}")


def seconds(hi: float, expected: str, limits: str) -> Callable[[str], float]:
    return checked(finite_float, lambda v: 0 < v <= hi, expected, limits)


positive_int = int_in(1, MAX_COUNT, "a positive integer")
nonneg_int = int_in(0, MAX_COUNT, "a non-negative integer")
seed_int = int_in(0, MAX_SEED, "a non-negative integer", "2^64-1")
workers_int = int_in(1, MAX_WORKERS, "a positive integer")
_workers_count = int_in(1, MAX_WORKERS, "a positive integer or auto")


def workers_or_auto(text: str) -> int | None:
    """--workers: a count, or ``auto`` (None: ``strategies.workers.auto_workers`` decides)."""
    return None if text.strip().lower() == "auto" else _workers_count(text)


worker_index = int_in(0, MAX_WORKERS - 1, "a non-negative integer")
retry_int = int_in(0, MAX_RETRY, "a non-negative integer")
branches_int = int_in(1, MAX_BRANCHES, "a positive integer")
positive_float = seconds(MAX_HEARTBEAT, "a positive number of seconds", f"limits: > 0 and <= {MAX_HEARTBEAT:g} s")
heartbeat_seconds = positive_float
grace_seconds = seconds(MAX_GRACE, "a positive number of seconds", f"limits: > --heartbeat and <= {MAX_GRACE:g} s, 7 days")
probability = checked(finite_float, lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]")


def name_problem(text: str, flag: str) -> str | None:
    """--experiment / --study: a file-name-safe word (it names files under --out-dir)."""
    if not re.fullmatch(NAME_PATTERN, text, re.ASCII) or ".." in text:
        return (f"argument {flag}: expected a name matching {NAME_PATTERN} without '..' (letters, digits, '.', '_', "
                f"'-'; no path separators), got {brief(text, 40)}")
    return None


def out_dir_problem(path: str, flag: str = "--out-dir") -> str | None:
    """Why ``path`` cannot hold the run's files (None if it can): it must be a writable
    directory, or not exist yet under a writable directory. Checked, not created.
    Also used by the analysis CLIs for their ``--out``."""
    path = str(path)
    if "\0" in path:
        return f"{flag} {brief(path, 60)} contains a NUL character"
    p = Path(path or ".")
    try:
        os.fsencode(path)  # lone surrogates: exists() says False, but nothing could be created there
        if p.exists():
            if not p.is_dir():
                return f"{flag} {brief(path, 60)} exists and is not a directory"
            if not os.access(p, os.W_OK | os.X_OK):
                return f"{flag} {brief(path, 60)} is not writable"
            return None
        parent = p.absolute().parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            return f"{flag} {brief(path, 60)} cannot be created: {brief(str(parent), 60)} is not a directory"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"{flag} {brief(path, 60)} cannot be created: {brief(str(parent), 60)} is not writable"
    except OSError as e:  # a name too long, a symlink loop, ...
        return f"{flag} {brief(path, 60)}: {e.strerror or e}"
    except ValueError:  # a name the file system cannot encode (lone surrogates)
        return f"{flag} {brief(path, 60)} is not a valid file name"
    return None


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog=PROG,
        description="Search the Dense Prediction Cell space with one strategy. Re-running the same command "
        "resumes the study up to the budget.",
        epilog="examples:\n"
        "  python -m strategies.run --strategy random\n"
        "  python -m strategies.run --strategy evolution --objective synthetic --budget 500 --seed 3\n"
        "  python -m strategies.run --strategy tpe --workers 2\n"
        "  python -m strategies.run --strategy local --storage postgresql://user:pw@db-host/dpc  # on each machine",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--strategy", choices=list(STRATEGIES), help="search strategy (required)")
    p.add_argument("--budget", type=positive_int, help="trials to run in the study, failed evaluations included "
                   "(default: the proxy config's default_budget, 2 for cpu; 100 for other objectives)")
    p.add_argument("--seed", type=seed_int, default=0, help="sampler seed (default 0)")
    p.add_argument("--objective", default="proxy", help="proxy | full | bench[:data=DIR,model=rf|hgb] | synthetic[:NAME,key=value,...] | "
                   "module:callable (default proxy)")
    p.add_argument("--config", help="evaluator config: test | cpu | paper (default cpu, on GPUs too)")
    p.add_argument("--dataset", help="proxy/full data: scenes[:PRESET] (default, embedded), voc:PATH (Pascal-VOC "
                   "folder) or cityscapes:PATH")
    p.add_argument("--experiment", help="experiment name (default from the objective, e.g. proxy-cpu)")
    p.add_argument("--study", help="study name (default {experiment}-{strategy}-seed{seed})")
    p.add_argument("--storage", help="journal file path or Optuna storage URL, e.g. postgresql://user:pw@host/db "
                   "(default runs/{experiment}.journal)")
    p.add_argument("--workers", type=workers_or_auto, default=None,
                   help="worker processes on this machine, or auto (the default): 1 on the CPU; with CUDA and "
                   "the proxy/full objective, as many as fit in 80%% of the free GPU memory (an estimate per "
                   "config, strategies.workers.WORKER_GPU_BYTES), at most one per CPU core and one per trial "
                   "of the budget; the choice is printed")
    p.add_argument("--dedupe", action="store_true", help="reuse the value of an already evaluated equivalent cell")
    p.add_argument("--branches", type=branches_int, default=5, help="branches per cell (default 5, the paper's)")
    p.add_argument("--eval-seed", type=seed_int, help="training seed for every evaluation (default: the config's)")
    p.add_argument("--cache-dir", help="dataset/feature cache directory of the evaluator")
    p.add_argument("--out-dir", default="runs", help="where the default journal and best_cell.json go (default runs)")
    p.add_argument("--reeval-seeds", type=int_in(0, 1000, "a non-negative integer"), default=None,
                   help="at the end, re-train the best cell with this many fresh seeds and score it on the test split "
                   f"(proxy/full objectives; 0: skip; default: the config's default_reeval_seeds, 2 for cpu, else "
                   f"{DEFAULT_REEVAL_SEEDS})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s = p.add_argument_group("strategy settings (declared on each strategy; defaults scale with the budget)")
    add_strategy_flags(s)
    add_pruner_flags(p.add_argument_group("pruning (multi-fidelity: strategies.pruners)"))
    f = p.add_argument_group("faults")
    d = SearchSettings()  # the one set of defaults
    f.add_argument("--heartbeat", type=heartbeat_seconds, default=d.heartbeat,
                   help=f"seconds between trial heartbeats (default {d.heartbeat:g})")
    f.add_argument("--grace", type=grace_seconds, default=d.grace,
                   help=f"seconds without heartbeat before a trial is re-run (default {d.grace:g})")
    f.add_argument("--max-retry", type=retry_int, default=d.max_retry,
                   help=f"re-runs of a cell whose worker died; interruptions do not count (default {d.max_retry})")
    f.add_argument("--max-consecutive-failures", type=positive_int, default=d.max_consecutive_failures,
                   help=f"stop a worker after this many failed evaluations in a row (default {d.max_consecutive_failures})")
    p.add_argument("--worker-index", type=worker_index, help=argparse.SUPPRESS)
    p.add_argument("--worker-settings", help=argparse.SUPPRESS)  # SearchSettings as JSON, from the parent
    p.add_argument("--threads", type=workers_int, help=argparse.SUPPRESS)
    p.add_argument("--poll", type=positive_float, default=d.poll, help=argparse.SUPPRESS)
    return p


def parse_args(argv: list[str], parser: OneLineParser | None = None) -> argparse.Namespace:
    """Parse and check every flag without searching: a bad one exits with status 2 and one line
    ``python -m strategies.run: error: ...`` naming the limits."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if args.worker_settings is not None:
        return args  # a worker: its settings were checked by its parent, and are checked again when built
    if args.strategy is None:
        parser.error("the following arguments are required: --strategy")
    if args.grace <= args.heartbeat:
        parser.error(f"need grace > heartbeat, got --grace {args.grace:g} and --heartbeat {args.heartbeat:g}")
    if args.worker_index is None:  # a worker's names and folder come from its parent (CLI or API)
        for problem in (name_problem(args.experiment, "--experiment") if args.experiment is not None else None,
                        name_problem(args.study, "--study") if args.study is not None else None,
                        out_dir_problem(args.out_dir)):
            if problem:
                parser.error(problem)
    head, _, rest = str(args.objective).strip().partition(":")
    if head == "synthetic":
        from .synthetic import make_synthetic

        try:
            make_synthetic(rest)  # milliseconds: the optimum is only computed when first asked for
        except ValueError as e:  # ObjectiveError
            parser.error(f"--objective: {e}")
    return args


def setting_type(setting: Setting) -> Callable[[str], Any]:
    """The argparse type of a declared strategy setting: its kind within its bounds."""
    if setting.kind is int:
        lo = int(setting.low) if setting.low is not None else -MAX_COUNT
        hi = int(setting.high) if setting.high is not None else MAX_COUNT
        return int_in(lo, min(hi, MAX_COUNT), setting.expected())
    return checked(finite_float, lambda v: (setting.low is None or v >= setting.low) and (setting.high is None or v <= setting.high),
                   setting.expected())


def add_strategy_flags(group: Any) -> None:
    """One flag per declared strategy setting (``Setting.flag``), for every strategy CLI."""
    for setting in all_settings().values():
        if setting.flag:
            users = "/".join(name for name, st in STRATEGIES.items() if setting in st.settings)
            group.add_argument(setting.flag, dest=setting.name, type=setting_type(setting), help=f"{users}: {setting.help}")


def add_pruner_flags(group: Any) -> None:
    """``--pruner``, its settings (declared on each pruner), ``--budget-in`` and ``--eval-every``."""
    from .pruners import PRUNERS, pruner_settings
    from .settings import BUDGET_UNITS

    group.add_argument("--pruner", choices=list(PRUNERS), default="none",
                       help="stop weak candidates early: " + "; ".join(f"{p.name}: {p.summary}" for p in PRUNERS.values()))
    group.add_argument("--budget-in", dest="budget_unit", choices=BUDGET_UNITS, default="evaluations",
                       help="count --budget in trials (evaluations, the default) or in full-evaluation equivalents "
                       "(steps trained / steps of a full evaluation, summed: pruned trials cost their part)")
    group.add_argument("--eval-every", type=positive_int, default=None,
                       help="proxy/full: val mIOU every N training steps, what a pruner acts on (default: the config's; "
                       "with a pruner and a config that evaluates only at the end, a sixth of the training)")
    for setting in pruner_settings().values():
        users = "/".join(name for name, p in PRUNERS.items() if setting in p.settings)
        group.add_argument(setting.flag, dest=setting.name, type=setting_type(setting), help=f"{users}: {setting.help}")


def explicit_pruner_params(args: argparse.Namespace) -> dict[str, Any]:
    """The pruner settings given on the command line that the chosen pruner takes (others: an error)."""
    from .pruners import get_pruner, pruner_settings

    given = {name: getattr(args, name) for name in pruner_settings() if getattr(args, name, None) is not None}
    takes = {s.name for s in get_pruner(args.pruner).settings}
    extra = sorted(set(given) - takes)
    if extra:
        flags = ", ".join(pruner_settings()[k].flag for k in extra)
        raise ValueError(f"{flags} do(es) not apply to --pruner {args.pruner}")
    return given


def explicit_params(args: argparse.Namespace) -> dict[str, Any]:
    """The strategy settings given on the command line (the rest get their defaults)."""
    return {name: getattr(args, name) for name, st in all_settings().items()
            if st.flag and getattr(args, name, None) is not None}


FLAG_OF = {name: st.flag for name, st in all_settings().items() if st.flag}


class Progress:
    """tqdm bar: trials used of the budget, and the best value so far."""

    def __init__(self, strategy: str, budget: int, metric: str, enabled: bool, unit: str = "evaluations") -> None:
        self.strategy, self.budget, self.metric, self.enabled, self.unit = strategy, budget, metric, enabled, unit
        self.bar = None

    def __call__(self, status) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.budget, initial=min(int(status.spent(self.unit)), self.budget), desc=self.strategy,
                            unit="trial" if self.unit == "evaluations" else "eq", file=sys.stderr, dynamic_ncols=True)
        self.bar.n = min(round(status.spent(self.unit), 2), self.budget)
        best = "-" if status.best is None else f"{status.best:.4f}"
        fails = f", {status.failed} failed" if status.failed else ""
        fails += f", {status.pruned} pruned" if status.pruned else ""
        self.bar.set_postfix_str(f"best {self.metric} {best}{fails}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def pruning_line(study) -> str | None:
    """What pruning saved: the pruned trials' training time against as many full ones (the median
    complete trial's), from the trials' own start and end times."""
    import statistics

    from .optuna_adapter import trial_seconds as seconds

    trials = study.get_trials(deepcopy=False, states=(TrialState.PRUNED, TrialState.COMPLETE))
    pruned = [seconds(t) for t in trials if t.state == TrialState.PRUNED]
    full = [seconds(t) for t in trials if t.state == TrialState.COMPLETE and "dedupe_of" not in t.user_attrs]
    pruned, full = [x for x in pruned if x is not None], [x for x in full if x is not None]
    if not pruned or not full:
        return None
    steps = sorted(t.user_attrs.get("pruned_step", 0) for t in trials if t.state == TrialState.PRUNED)
    would = len(pruned) * statistics.median(full)
    return (f"pruned    {len(pruned)} trials at steps {steps[0]}-{steps[-1]}: {_duration(sum(pruned))} of training instead "
            f"of ~{_duration(would)} for full ones (median complete trial {_duration(statistics.median(full))}), "
            f"saved ~{_duration(max(0.0, would - sum(pruned)))}")


def summary(result, out_dir: str, elapsed: float, incumbent=None) -> tuple[list[str], int]:
    """The lines printed at the end, and the exit status (1 if no trial completed)."""
    st = result.status
    budget = result.study.user_attrs.get("budget")
    lines = [f"{st.used}/{budget} trials used ({st.complete} complete, {st.failed} failed) in {_duration(elapsed)}"]
    if st.pruned or result.study.user_attrs.get("budget_unit") == "equivalents":
        lines[0] = (f"{st.used} trials ({st.complete - st.pruned} complete, {st.pruned} pruned, {st.failed} failed), "
                    f"{st.compute:.2f}/{budget if result.study.user_attrs.get('budget_unit') == 'equivalents' else st.used} "
                    f"full-evaluation equivalents, in {_duration(elapsed)}")
    saved = pruning_line(result.study)
    if saved:
        lines.append(saved)
    t = st.best_trial
    if t is None:
        lines.append("no trial completed: see each trial's failure_reason (optuna-dashboard, or analysis)")
        return lines, 1
    genome = result.best_genome
    values = {tr.value for tr in result.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    if st.complete >= 3 and len(values) == 1:
        lines.append(f"warning: all {st.complete} complete trials scored exactly {st.best:.4f}: "
                     "the objective does not tell these cells apart")
    lines.append(f"best cell  {genome}  (trial {t.number})")
    if incumbent is not None:
        lines.append(f"val {result.metric:<6} {st.best:.4f}  (what selected it: one training seed, the search signal)")
        lines.append(incumbent.line(result.metric))
    else:
        lines.append(f"{result.metric:<10} {st.best:.4f}")
    if t.user_attrs.get("flops") is not None:
        lines.append(f"{'FLOPs':<10} {float(t.user_attrs['flops']) / 1e9:.3f} G")
    if t.user_attrs.get("params") is not None:
        lines.append(f"{'params':<10} {int(t.user_attrs['params']):,}")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in result.study.study_name)
    path = Path(out_dir) / safe / "best_cell.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(genome.to_json() + "\n")
    except OSError as e:  # the folder was checked before the search; it may have changed since
        lines.append(f"{PROG}: error: cannot write {path}: {e.strerror or e} (the study holds every result)")
        return lines, 1
    except ValueError as e:  # a file name the file system cannot encode
        lines.append(f"{PROG}: error: cannot write {brief(str(path), 80)}: {e}")
        return lines, 1
    lines.append(f"{'json':<10} {path}")
    return lines, 0


def _logs_above_the_bar(enabled: bool):
    """Log lines (e.g. a requeued trial) go above the progress bar, not into it."""
    if not enabled:
        import contextlib

        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parse_args(argv, parser)
    worker = args.worker_index is not None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    old_sigterm = signal.signal(signal.SIGTERM, _sigterm) if threading_main() else None
    try:
        return _run(parser, args, argv, worker)
    finally:
        if old_sigterm is not None:
            signal.signal(signal.SIGTERM, old_sigterm)


def settings_from_args(args: argparse.Namespace, argv: list[str], experiment: str, storage: str) -> "SearchSettings":
    """The command line as one ``SearchSettings`` (what every worker process receives whole)."""
    from .settings import SearchSettings

    return SearchSettings(
        strategy=args.strategy, budget=args.budget, seed=args.seed, objective=args.objective, config=args.config,
        dataset=args.dataset, experiment=experiment, study=args.study, storage=storage, workers=args.workers,
        dedupe=args.dedupe, branches=args.branches, eval_seed=args.eval_seed, cache_dir=args.cache_dir,
        threads=args.threads, heartbeat=args.heartbeat, grace=args.grace, max_retry=args.max_retry, poll=args.poll,
        max_consecutive_failures=args.max_consecutive_failures, strategy_params=explicit_params(args),
        command=shlex.join(["python", "-m", "strategies.run", *argv]), pruner=args.pruner,
        pruner_params=explicit_pruner_params(args), budget_unit=args.budget_unit, eval_every=args.eval_every,
    )


def _run(parser: OneLineParser, args: argparse.Namespace, argv: list[str], worker: bool) -> int:

    from .api import run_queue, search
    from .objectives import ObjectiveError, resolve_objective
    from .pruners import eval_every_for
    from .settings import SearchSettings
    from .storage import StorageError
    from .study import SearchError

    if args.worker_settings is not None:
        try:
            settings = SearchSettings.from_json(args.worker_settings)
        except (ValueError, TypeError) as e:
            parser.exit(2, f"{PROG}: error: bad --worker-settings: {one_line(str(e))}\n")
        objective = None
    else:
        try:
            objective = resolve_objective(args.objective, config=args.config, eval_seed=args.eval_seed,
                                          cache_dir=args.cache_dir, threads=args.threads, dataset=args.dataset,
                                          eval_every=args.eval_every)
            every = eval_every_for(objective, args.pruner, args.eval_every)
            if every != args.eval_every:
                print(f"pruner {args.pruner}: config {objective.config} evaluates only at the end; reporting val mIOU "
                      f"every {every} steps (--eval-every {every})", flush=True)
                args.eval_every = every
                objective = resolve_objective(args.objective, config=args.config, eval_seed=args.eval_seed,
                                              cache_dir=args.cache_dir, threads=args.threads, dataset=args.dataset,
                                              eval_every=every)
        except (ObjectiveError, ValueError) as e:
            parser.exit(2, f"{PROG}: error: {one_line(str(e))}\n")
        if args.workers is None:  # auto: one per core on the CPU (proxy), on CUDA from free GPU memory
            from .workers import auto_workers_reason

            n, why = auto_workers_reason(objective.spec, objective.config)
            cap = args.budget or objective.default_budget
            if n > cap:
                n, why = cap, f"{why}; {cap} for a budget of {cap}"
            if n > 1:
                print(why, flush=True)
            args.workers = n
        experiment = args.experiment or objective.name
        storage = args.storage or str(Path(args.out_dir) / f"{experiment}.journal")
        try:
            settings = settings_from_args(args, argv, experiment, storage)
        except ValueError as e:
            parser.exit(2, f"{PROG}: error: {one_line(str(e))}\n")
    budget = settings.budget or (objective.default_budget if objective is not None else 0)
    show = not (args.quiet or worker)
    progress = Progress(settings.strategy or "cells", budget, objective.metric if objective else "value", enabled=show,
                        unit=settings.budget_unit)

    def on_start(study, handle, resumed, params) -> None:
        if worker:
            return
        described = ", ".join(f"{k} {v}" for k, v in params.items())
        print(f"{settings.strategy} search on {objective.spec}" + (f" (config {objective.config})" if objective.config else "")
              + (f", dataset {settings.dataset}" if settings.dataset else "")
              + f": budget {budget}, seed {settings.seed}" + (f", {settings.workers} workers" if settings.workers > 1 else "")
              + (f"; {described}" if described else "")
              + (f"; pruner {settings.pruner}" if settings.pruner != "none" else "")
              + ("; budget in full-evaluation equivalents" if settings.budget_unit == "equivalents" else ""))
        from .study import budget_status

        used = budget_status(study).used
        state = f"resuming at {used}/{budget}" if resumed else "new"
        print(f"study {study.study_name} in {handle.display} ({state})", flush=True)
        if objective.prepare_fn is not None and used < budget:
            print("preparing the evaluator (dataset and cached features, built once)...", flush=True)

    start = time.time()
    try:
        with _logs_above_the_bar(show):
            if worker and settings.strategy is None:
                run_queue(settings)
                return 0
            result = search(objective, settings=settings, on_progress=progress, on_start=on_start)
    except KeyboardInterrupt:
        progress.close()
        if not worker:
            print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except (ObjectiveError, StorageError, ValueError) as e:
        progress.close()
        if os.environ.get("DPC_NAS_DEBUG"):
            raise
        msg = str(e)
        for key, flag in FLAG_OF.items():
            msg = msg.replace(f"setting {key}", f"setting {flag}")
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
    except SearchError as e:
        progress.close()
        if os.environ.get("DPC_NAS_DEBUG"):
            raise
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    progress.close()
    if worker:
        return 0
    incumbent = None
    reeval = objective.default_reeval_seeds if args.reeval_seeds is None else args.reeval_seeds
    if objective.has_test and reeval and result.status.best_trial is not None:
        print(f"re-training the best cell with {reeval} fresh seeds, scored on the test split...", flush=True)
        try:
            from .incumbent import reevaluate_incumbent

            incumbent = reevaluate_incumbent(result.study, result.settings, objective, reeval, progress=show)
        except KeyboardInterrupt:
            print("interrupted; re-run the same command to finish the re-training", file=sys.stderr)
            return 130
        except (StorageError, SearchError, ValueError) as e:
            print(f"{PROG}: error: re-training the best cell: {e}", file=sys.stderr)
            return 1
    lines, status = summary(result, args.out_dir, time.time() - start, incumbent)
    print("\n".join(lines))
    return status


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
