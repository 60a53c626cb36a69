"""The DPC-Bench objective (``--objective bench``): strategies compared in minutes on recorded evaluations.

A cell the table holds returns one of its recorded evaluations: the record with the training seed
asked for (the search's ``--eval-seed``, default 0: every recorded cell has seed 0), so, as with the
real proxy and a fixed training seed, the same cell always gets the same value. Incumbent re-training
seeds (``strategies.incumbent.FRESH_SEED_BASE + i``) take the cell's *other* recorded seeds first, in
seed order, so the reported test value is real data where the table has it. Any other (cell, seed)
is a draw: a held cell's mean over its n seeds plus N(0, sigma * sqrt(1 + 1/n)) (the predictive of a
new seed), a cell the table lacks the surrogate's prediction plus N(0, sigma) (NAS-Bench-301's
scheme), sigma the pooled seed-to-seed std of the multi-seed cells; val and test are drawn apart.
Draws are seeded by (canonical hash, training seed): deterministic, equal for equivalent cells.

Intermediate values replay the record's val learning curve; a surrogate cell's curve is the final
value times the table's median ratio of val at each step to the final val. A pruner that stops the
replay at step s (the callback raises) gets the simulated seconds of s steps on the exception's
``attrs``, which the worker stores on the pruned trial. Each result carries
``simulated_seconds`` (the record's train + eval seconds, or the surrogate's train seconds plus the
table's median eval seconds), from which ``analysis.load`` draws best-so-far against simulated time,
and ``test_miou`` (records' or drawn) for the incumbent report; ``bench_source`` says which
(``table`` or ``surrogate``).

Spec: ``bench[:data=DIR,model=rf|hgb]``; DIR defaults to the directory of ``bench/records`` for the
``--config`` (default ``cpu``) with the most records. The fitted surrogate is cached by the records'
digest (``$DPC_NAS_CACHE/bench``), so worker processes and reruns do not fit it again.
"""
from __future__ import annotations

import math
import os
import pickle
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from dpc.genome import Genome
from strategies.incumbent import FRESH_SEED_BASE
from strategies.objectives import ObjectiveError

from . import surrogate as S
from .bench import DEFAULT_DATA, read_records

MIN_CELLS = 20  # fewer cells than this give a surrogate that is mostly noise: refuse, and say how to collect more
_SALT = {"val_miou": 1, "test_miou": 2}


def bench_directory(config: str = "cpu", data: str | os.PathLike = DEFAULT_DATA) -> Path:
    """``data`` itself when it holds shards, else its ``{config}-*`` directory with the most records."""
    root = Path(data)
    if not root.is_dir():
        raise ObjectiveError(f"bench data {root} is not a directory (collect: python -m benchmarks.bench collect --config {config})")
    if any(root.glob("*.jsonl")):
        return root
    dirs = sorted(d for d in root.glob(f"{config}-*") if d.is_dir() and any(d.glob("*.jsonl")))
    if not dirs:
        raise ObjectiveError(f"no DPC-Bench records for config {config} in {root} "
                             f"(collect: python -m benchmarks.bench collect --config {config})")
    return max(dirs, key=lambda d: (sum(1 for _ in read_records(d)), d.name))


@dataclass
class BenchResult:
    """What one bench query returns; ``to_dict`` is stored on the trial."""

    miou: float
    test_miou: float
    source: str  # "table" | "surrogate"
    seed: int
    train_seconds: float
    eval_seconds: float
    params: Optional[int] = None
    flops: Optional[int] = None
    iterations: Optional[int] = None
    table_seed: Optional[int] = None  # the recorded seed replayed (None: a draw)
    curve: list = field(default_factory=list)
    simulated_seconds: float = 0.0  # train + eval seconds: one step of the simulated clock

    def to_dict(self) -> dict[str, Any]:
        return {"miou": self.miou, "test_miou": self.test_miou, "bench_source": self.source, "eval_seed": self.seed,
                "table_seed": self.table_seed, "simulated_seconds": self.simulated_seconds,
                "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds, "params": self.params,
                "flops": self.flops, "iterations": self.iterations}


def _ok(rec: dict, key: str) -> bool:
    v = rec.get(key)
    return rec.get("error") is None and isinstance(v, (int, float)) and math.isfinite(v)


def _seconds(rec: dict) -> float | None:
    t = rec.get("train_seconds")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0 else None


class BenchObjective:
    """Replays a DPC-Bench directory; falls back to its surrogate (see the module doc)."""

    metric = "mIOU"
    has_test = True

    def __init__(self, directory: str | os.PathLike, eval_seed: int = 0, model: str = S.DEFAULT_MODEL,
                 cache_dir: str | os.PathLike | None = None, min_cells: int = MIN_CELLS):
        self.directory = Path(directory)
        records = [r for r in read_records(self.directory) if _ok(r, "val_miou")]
        self.cells: dict[str, dict[int, dict]] = {}
        for r in records:
            self.cells.setdefault(r["canonical_hash"], {})[int(r["seed"])] = r
        if len(self.cells) < min_cells:
            raise ObjectiveError(f"{self.directory} holds {len(self.cells)} cells with a val mIOU; the bench objective needs "
                                 f">= {min_cells} (collect more: python -m benchmarks.bench collect)")
        self.eval_seed = int(eval_seed)
        self.surrogate = _fitted(records, model, cache_dir)
        self.sigma = {t: (s if math.isfinite(s) else 0.0) for t, s in self.surrogate.sigma.items()}
        self.shape = _curve_shape(records)
        self.eval_seconds = statistics.median(float(r.get("eval_seconds") or 0.0) for r in records)
        self.iterations = statistics.median_low(int(r.get("iterations") or (r["curve"][-1][0] if r.get("curve") else 0))
                                                for r in records)
        self.n_records = len(records)
        self.eval_every = int(self.shape[0][0]) if len(self.shape) > 1 else 0

    # -- queries
    def __call__(self, genome: Genome, seed: int | None = None,
                 callback: Callable[[int, float], None] | None = None) -> BenchResult:
        g = Genome.parse(genome) if isinstance(genome, str) else genome
        seed = self.eval_seed if seed is None else int(seed)
        h = g.canonical_hash()
        held = self.cells.get(h, {})
        rec = self._record_for(held, seed)
        if rec is not None:
            res = BenchResult(
                miou=float(rec["val_miou"]), test_miou=_float(rec.get("test_miou")), source="table", seed=seed,
                table_seed=int(rec["seed"]), train_seconds=_seconds(rec) or self._cell_train_seconds(g, held),
                eval_seconds=float(rec.get("eval_seconds") or 0.0), params=rec.get("params"), flops=rec.get("flops"),
                iterations=rec.get("iterations"), curve=[list(p) for p in rec.get("curve") or []],
            )
        else:
            res = self._draw(g, h, held, seed)
        res.simulated_seconds = res.train_seconds + res.eval_seconds
        if callback is not None:
            for i, (step, value) in enumerate(res.curve):
                try:
                    callback(int(step), float(value))
                except BaseException as e:  # pruned (optuna.TrialPruned) here: the clock ran only this far
                    done = step / (res.iterations or res.curve[-1][0])
                    e.attrs = {"train_seconds": done * res.train_seconds,  # type: ignore[attr-defined]
                               "eval_seconds": (i + 1) / len(res.curve) * res.eval_seconds, "bench_source": res.source}
                    e.attrs["simulated_seconds"] = e.attrs["train_seconds"] + e.attrs["eval_seconds"]
                    raise
        return res

    evaluate = __call__

    def _cell_train_seconds(self, g: Genome, held: dict) -> float:
        """The cell's measured training seconds (mean over its records that have them), else the
        surrogate's; a record without them (``train_seconds: null``: its clock was not the
        training's) costs what its cell costs."""
        measured = [t for t in map(_seconds, held.values()) if t]
        if measured:
            return statistics.fmean(measured)
        if "log_train_seconds" in self.surrogate.models:
            return math.exp(self.surrogate.predict(g, target="log_train_seconds"))
        return 0.0

    def _record_for(self, held: dict[int, dict], seed: int) -> Optional[dict]:
        if seed in held:
            return held[seed]
        i = seed - FRESH_SEED_BASE
        others = [s for s in sorted(held) if s != self.eval_seed]
        return held[others[i]] if 0 <= i < len(others) else None

    def _rng(self, h: str, seed: int, target: str) -> np.random.Generator:
        return np.random.default_rng([int(h, 16), seed % 2**63, _SALT[target]])

    def _draw(self, g: Genome, h: str, held: dict[int, dict], seed: int) -> BenchResult:
        values = {}
        for target in ("val_miou", "test_miou"):
            rng = self._rng(h, seed, target)
            seen = [float(r[target]) for r in held.values() if _ok(r, target)]
            if seen:
                values[target] = statistics.fmean(seen) + float(rng.normal(0.0, self.sigma.get(target, 0.0) * math.sqrt(1 + 1 / len(seen))))
            else:
                mean = self.surrogate.predict(g, target=target) if target in self.surrogate.models else math.nan
                values[target] = mean + float(rng.normal(0.0, self.sigma.get(target, 0.0)))
        train = self._cell_train_seconds(g, held)
        if held:  # cost and size are the cell's, whatever the seed
            any_rec = next(iter(held.values()))
            params, flops = any_rec.get("params"), any_rec.get("flops")
        else:
            from dpc.cost import cell_cost

            cost = cell_cost(g, **S.CPU_SHAPE)
            params, flops = int(cost.params), int(cost.flops)
        final = values["val_miou"]
        curve = [[step, final * ratio] for step, ratio in self.shape] or [[self.iterations, final]]
        curve[-1][1] = final
        return BenchResult(miou=final, test_miou=values["test_miou"], source="table" if held else "surrogate", seed=seed,
                           train_seconds=train, eval_seconds=self.eval_seconds, params=params,
                           flops=flops, iterations=self.iterations, curve=curve)


def _float(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else math.nan


def _curve_shape(records: list[dict]) -> list[tuple[int, float]]:
    """(step, median of val at step / final val) over records whose curve ends at the common final step."""
    curves = [r["curve"] for r in records if r.get("curve") and r["val_miou"] > 0]
    if not curves:
        return []
    last = statistics.median_low(c[-1][0] for c in curves)
    ratios: dict[int, list[float]] = {}
    for c in curves:
        if c[-1][0] == last:
            for step, v in c:
                ratios.setdefault(int(step), []).append(float(v) / float(c[-1][1]))
    return [(step, statistics.median(rs)) for step, rs in sorted(ratios.items())]


def _fitted(records: list[dict], model: str, cache_dir: str | os.PathLike | None) -> S.Surrogate:
    """The surrogate of these records, from the cache when the same records were fitted before."""
    from proxy.store import default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / "bench" / f"surrogate-{S.digest(records)}-{model}-v{S.FEATURE_VERSION}.pkl"
    if path.exists():
        try:
            return S.load(path)
        except Exception:  # a partial or stale file: fit again
            pass
    sur = S.fit(records, model=model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump({"feature_version": S.FEATURE_VERSION, "surrogate": sur}, fh)
    os.replace(tmp, path)
    return sur


def parse_options(rest: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or key not in ("data", "model"):
            raise ObjectiveError(f"bench option {part!r}: expected data=DIR or model={'|'.join(S.MODELS)}")
        if key in opts:
            raise ObjectiveError(f"bench option {key} given twice")
        opts[key] = value
    if "model" in opts and opts["model"] not in S.MODELS:
        raise ObjectiveError(f"bench model must be one of {', '.join(S.MODELS)}, got {opts['model']!r}")
    return opts


def make_bench_objective(rest: str = "", config: str | None = None, eval_seed: int | None = None,
                         cache_dir: str | None = None) -> BenchObjective:
    """``--objective bench[:data=DIR,model=NAME]`` -> a BenchObjective (``config`` picks the records directory)."""
    opts = parse_options(rest)
    directory = bench_directory(config or "cpu", opts.get("data", DEFAULT_DATA))
    return BenchObjective(directory, eval_seed=0 if eval_seed is None else eval_seed,
                          model=opts.get("model", S.DEFAULT_MODEL), cache_dir=cache_dir)
