"""Objectives: any ``genome -> float`` (higher is better), resolved from a spec string.

Specs (``--objective``): ``proxy`` (the proxy evaluator, ``proxy.evaluator``), ``full``
(the full-task evaluator, ``proxy.full``), ``synthetic[:NAME,key=value,...]`` (cheap, known
optimum; see ``strategies.synthetic``), ``bench[:data=DIR,model=NAME]`` (DPC-Bench's recorded
evaluations and surrogate, ``benchmarks.bench_objective``; a plug-in like the next, imported
only when asked for) and ``package.module:callable`` (a user's function,
or a class instantiated without arguments, or an object with ``evaluate``).

An objective may return a number, or a result object with ``.miou`` and ``.to_dict()``
(the evaluators' ``EvalResult``), whose keys are then stored on the trial. A raised
exception, a NaN or an infinite value is a failed evaluation; exceptions with a ``reason``
attribute (``proxy.errors.EvaluationError``) give that reason. ``proxy`` is imported only
when asked for, so strategies work without torch-heavy imports on the synthetic objective.
"""
from __future__ import annotations

import importlib
import inspect
import json
import logging
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from dpc.genome import Genome
from dpc.ops import brief

log = logging.getLogger(__name__)

MAX_REASON = 500


class ObjectiveError(ValueError):
    """An objective spec that cannot be resolved; the message is one line."""


class EvaluationFailure(Exception):
    """An evaluation that produced no usable value; ``reason`` goes on the failed trial."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def one_line(text: str, limit: int = MAX_REASON) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    if isinstance(reason, str) and reason.strip():
        return one_line(reason)
    msg = str(e).strip()
    return one_line(f"{type(e).__name__}: {msg}" if msg else type(e).__name__)


def _jsonable(value: Any) -> Any:
    """Numpy scalars/arrays and tuples -> plain JSON types, as every storage accepts."""
    def default(o: Any) -> Any:
        if hasattr(o, "tolist"):
            return o.tolist()
        if hasattr(o, "item"):
            return o.item()
        return str(o)

    return json.loads(json.dumps(value, default=default))


@dataclass
class Outcome:
    value: float
    attrs: dict[str, Any] = field(default_factory=dict)


def outcome_of(result: Any) -> Outcome:
    """A number, or an object with ``.miou`` (and ``.to_dict()``), -> Outcome; else failure."""
    attrs: dict[str, Any] = {}
    if hasattr(result, "miou"):
        value = result.miou
        if callable(getattr(result, "to_dict", None)):
            attrs = {str(k): _jsonable(v) for k, v in result.to_dict().items()}
    else:
        value = result
    if isinstance(value, bool) or value is None:
        raise EvaluationFailure(f"objective returned {value!r}, expected a number")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise EvaluationFailure(one_line(f"objective returned {type(result).__name__} {result!r:.80}, expected a number")) from None
    if not math.isfinite(value):
        raise EvaluationFailure(f"objective returned {value}")
    return Outcome(value, attrs)


@dataclass
class Objective:
    """A resolved objective: the callable plus what a study records about it."""

    fn: Callable[..., Any]
    spec: str  # stored on the study as ``objective``
    name: str  # default experiment name
    config: str | None = None  # evaluator config name, stored on the study as ``config``
    metric: str = "value"  # what the value is called in output ("mIOU", "score")
    prepare_fn: Callable[[], Any] | None = None
    takes_callback: bool = False  # fn(genome, callback=(step, value)) for intermediate values
    default_budget: int = 100  # evaluations when --budget is not given
    default_reeval_seeds: int = 3  # strategies.run's re-trainings of the best cell when --reeval-seeds is not given
    takes_seed: bool = False  # fn(genome, seed=...) trains with that seed (re-training with fresh seeds)
    has_test: bool = False  # results carry test_miou (a held-out split): incumbents are re-scored on it

    build_fn: Callable[[], Any] | None = None  # build the caches on disk only (the parent of several workers)
    simulated: bool = False  # a replayed table (bench): milliseconds an evaluation, so a comparison runs each study in memory
    steps: int | None = None  # training steps of a full evaluation (a pruned trial's compute = its steps / these)
    eval_every: int = 0  # steps between the intermediate values it reports (0: only the final one)

    def prepare(self) -> None:
        if self.prepare_fn is not None:
            self.prepare_fn()

    def build(self) -> None:
        """What a parent of worker processes runs before starting them: the caches on disk, built
        once, without the data in this process's (GPU) memory; ``prepare`` where no builder is set."""
        if self.build_fn is not None:
            self.build_fn()
        else:
            self.prepare()

    def evaluate(self, genome: Genome, callback: Callable[[int, float], None] | None = None,
                 seed: int | None = None) -> Outcome:
        kwargs: dict[str, Any] = {}
        if self.takes_callback and callback:
            kwargs["callback"] = callback
        if seed is not None and self.takes_seed:
            kwargs["seed"] = int(seed)
        return outcome_of(self.fn(genome, **kwargs))


def experiment_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-") or "objective"


def _wrap_callable(obj: Any, spec: str, name: str) -> Objective:
    if inspect.isclass(obj):
        try:
            obj = obj()
        except Exception as e:
            raise ObjectiveError(f"cannot instantiate {spec}: {failure_reason(e)}") from None
    fn = obj if callable(obj) else getattr(obj, "evaluate", None)
    if not callable(fn):
        raise ObjectiveError(f"{spec} is not callable (expected a function genome -> float)")
    prepare = getattr(obj, "prepare", None)
    try:
        accepts = set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # builtins without a signature
        accepts = set()
    return Objective(
        fn=fn,
        spec=spec,
        name=name,
        metric=str(getattr(obj, "metric", "value")),
        prepare_fn=prepare if callable(prepare) else None,
        takes_callback="callback" in accepts,
        takes_seed="seed" in accepts,  # fn(genome, seed=...) can be re-trained with fresh seeds
        has_test=bool(getattr(obj, "has_test", False)),
    )


def _check_dataset(dataset: Any) -> str:
    """``scenes[:PRESET]`` | ``voc:PATH`` | ``cityscapes:PATH``, the folder checked up front."""
    if not isinstance(dataset, str) or not dataset.strip():
        raise ObjectiveError(f"dataset must be scenes[:PRESET], voc:PATH or cityscapes:PATH, got {brief(dataset, 40)}")
    kind, _, arg = dataset.strip().partition(":")
    if kind == "scenes":
        return dataset.strip()
    if kind not in ("voc", "cityscapes"):
        raise ObjectiveError(f"unknown dataset {brief(dataset, 60)}; expected scenes[:PRESET], voc:PATH or cityscapes:PATH")
    if not arg:
        raise ObjectiveError(f"dataset {kind} needs a folder: {kind}:PATH")
    if not os.path.isdir(arg):
        raise ObjectiveError(f"dataset folder {brief(arg, 120)} ({kind}) does not exist or is not a directory")
    return f"{kind}:{os.path.abspath(arg)}"  # workers may run elsewhere in the tree


def _evaluator(full: bool, config: str | None, eval_seed: int | None, cache_dir: str | None, threads: int | None,
               dataset: str | None = None, eval_every: int | None = None) -> Objective:
    kind = "full" if full else "proxy"
    try:
        from proxy.config import default_config_name, get_config

        if full:
            from proxy.full import full_evaluator as Evaluator
        else:
            from proxy.evaluator import ProxyEvaluator as Evaluator
    except ImportError as e:
        raise ObjectiveError(f"--objective {kind} needs the proxy package, which failed to import: {one_line(str(e), 200)}") from None
    name = config or default_config_name()
    try:
        cfg = get_config(name, full=full)
    except ValueError as e:
        raise ObjectiveError(one_line(str(e))) from None
    if eval_every is not None:  # the values are unchanged by it (so it is not in the config hash)
        cfg = cfg.replace(eval_every=int(eval_every))
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    evaluator = Evaluator(config=cfg, cache_dir=cache_dir, dataset=dataset)

    def fn(genome: Genome, callback: Callable[[int, float], None] | None = None, seed: int | None = None) -> Any:
        return evaluator.evaluate(genome, seed=eval_seed if seed is None else seed, callback=callback)

    data = "" if dataset is None or dataset.startswith("scenes") else "-" + dataset.partition(":")[0]
    return Objective(
        fn, kind, f"{kind}-{name}{data}", config=name, metric="mIOU", prepare_fn=evaluator.prepare,
        build_fn=evaluator.build_caches, takes_callback=True,
        takes_seed=True, has_test=True,
        default_budget=int(getattr(cfg, "default_budget", 16)),
        default_reeval_seeds=int(getattr(cfg, "default_reeval_seeds", 3)),
        steps=int(cfg.iterations), eval_every=int(cfg.eval_every or 0),
    )


def resolve_objective(
    spec: str | Callable[..., Any] | Objective,
    config: str | None = None,
    eval_seed: int | None = None,
    cache_dir: str | None = None,
    threads: int | None = None,
    dataset: str | None = None,
    eval_every: int | None = None,
) -> Objective:
    """``"proxy"``, ``"full"``, ``"synthetic:slow,sleep=1"``, ``"pkg.mod:fn"`` or a callable.

    ``dataset`` (``scenes[:PRESET]``, ``voc:PATH``, ``cityscapes:PATH``) is the evaluators'
    training and validation data; only ``proxy`` and ``full`` take one, and ``eval_every`` (their
    intermediate val mIOU every N steps, for pruners), too.

    Bad specs and options are a one-line ObjectiveError: ``eval_seed`` an integer in 0..2^64-1,
    ``threads`` an integer in 1..1024, ``config`` and ``cache_dir`` strings (synthetic options:
    see ``strategies.synthetic``).
    """
    if isinstance(spec, Objective):
        return spec
    if dataset is not None:
        dataset = _check_dataset(dataset)
        if not (isinstance(spec, str) and spec.strip() in ("proxy", "full")):
            raise ObjectiveError(f"--dataset applies to the proxy and full objectives, not to {brief(spec, 40)}")
    if eval_seed is not None and (isinstance(eval_seed, bool) or not isinstance(eval_seed, numbers.Integral)
                                  or not 0 <= eval_seed < 2**64):
        raise ObjectiveError(f"eval_seed must be an integer in 0..2^64-1, got {brief(eval_seed, 40)}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral)
                                or not 1 <= threads <= 1024):
        raise ObjectiveError(f"threads must be an integer in 1..1024, got {brief(threads, 40)}")
    if config is not None and not isinstance(config, str):
        raise ObjectiveError(f"config must be a config name (str), got {brief(config, 40)}")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise ObjectiveError(f"cache_dir must be a path, got {brief(cache_dir, 40)}")
    if callable(spec) and not isinstance(spec, str):
        name = getattr(spec, "__name__", None) or type(spec).__name__
        obj = _wrap_callable(spec, f"{getattr(spec, '__module__', '?')}:{name}", experiment_name(name))
        obj.spec = f"python:{name}"
        return obj
    if not isinstance(spec, str) or not spec.strip():
        raise ObjectiveError(f"objective must be a callable or a spec string, got {brief(spec, 40)}")
    spec = spec.strip()
    head, sep, rest = spec.partition(":")
    if head in ("proxy", "full"):
        if sep:
            raise ObjectiveError(f"--objective {head} takes no options (use --config), got {brief(spec, 60)}")
        return _evaluator(head == "full", config, eval_seed, cache_dir, threads, dataset, eval_every)
    if head == "bench":
        try:
            from benchmarks.bench_objective import make_bench_objective
        except ImportError as e:
            raise ObjectiveError(f"--objective bench needs the benchmarks package: {one_line(str(e), 200)}") from None
        fn = make_bench_objective(rest, config=config, eval_seed=eval_seed, cache_dir=cache_dir)
        name = config or "cpu"
        return Objective(fn, spec, f"bench-{name}", config=name, metric="mIOU", takes_callback=True, takes_seed=True,
                         has_test=True, simulated=True, steps=fn.iterations, eval_every=fn.eval_every)
    if head == "synthetic":
        from .synthetic import make_synthetic

        try:
            fn = make_synthetic(rest)
        except ValueError as e:
            raise ObjectiveError(one_line(str(e))) from None
        canonical = "synthetic:" + (rest or "structured")
        return Objective(fn, canonical, experiment_name(canonical), metric=fn.metric)
    if not sep or not head or not rest:
        raise ObjectiveError(
            f"unknown objective {brief(spec, 60)}; expected proxy, full, bench[:key=value], synthetic[:NAME,key=value] or module:callable"
        )
    try:
        module = importlib.import_module(head)
    except Exception as e:  # ImportError, or the module itself raising on import
        raise ObjectiveError(one_line(f"cannot import module {brief(head, 60)} for --objective {spec}: {failure_reason(e)}", 300)) from None
    obj: Any = module
    for part in rest.split("."):
        if not hasattr(obj, part):
            raise ObjectiveError(one_line(f"module {brief(head, 60)} has no attribute {brief(rest, 60)} (--objective {spec})", 300))
        obj = getattr(obj, part)
    return _wrap_callable(obj, spec, experiment_name(spec))


def as_mapping(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes with plain JSON values, as every Optuna storage accepts."""
    return {str(k): _jsonable(v) for k, v in attrs.items()}
