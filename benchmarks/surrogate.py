"""DPC-Bench surrogate: predict a cell's proxy val mIOU (and test mIOU, log train seconds) from its genome.

``python -m benchmarks.surrogate validate [--data bench/records/DIR]`` prints a markdown table of the
held-out rank quality (Spearman, Kendall tau, R^2) on a random K-fold split by cell and on a
leave-one-source-out split, next to the seed-to-seed ceiling; ``fit --out FILE`` saves a fitted
model (pickle, with the feature version and a digest of the training data).

Features (``features(genome)``, ``FEATURE_NAMES``; fixed length ``N_FEATURES``) are computed on the
*canonical* genome (``Genome.canonical()``), so equivalent cells (same labelled tree, other branch
order) get equal vectors. Per branch slot (5 slots, the canonical order; a cell with fewer branches
leaves the last slots 0, more than 5 raises ValueError): a one-hot of the op family (conv1x1,
sep3x3, pool), log(rh), log(rw) for sep3x3 and log(gh), log(gw) for pool (0 where not applicable),
a one-hot of the input (F, branch 0..3) and the branch's depth (1 = reads F). Per cell: the depth
of the branch tree, the fan-out counts (children of F; branches with 0, 1, 2, >= 3 children), the
number of branches of each family, and log10 params and log10 FLOPs from ``dpc.cost.cell_cost`` at
the ``cpu`` shape (320 channels in, 33x33, 64 branch and 64 concat channels).

Model: the per-cell mean over seeds is the target (cells whose every seed failed are left out);
the noise model is the pooled seed-to-seed standard deviation of the cells with >= 2 seeds
(sqrt(sum of squared deviations from the cell mean / sum(n - 1))). ``predict`` gives the mean,
``sample`` the mean plus N(0, sigma). Two sklearn regressors are available (``MODELS``): a random
forest (``rf``, the default) and HistGradientBoostingRegressor (``hgb``). On a 260-cell synthetic
fixture (StructuredObjective quality + N(0, 0.02) seeds) their K-fold held-out Spearman was 0.60 (rf)
and 0.64 (hgb), leave-out-neighbour 0.70 vs 0.66, seed-0 surrogate vs seed 1 0.55 vs 0.56: a tie
within noise, while hgb's OpenMP threads took 60x longer on 2 busy cores (558 s vs 9.5 s), so rf
is the default; ``validate --model all`` compares both on real records.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import pickle
import sys
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import numpy as np

FEATURE_VERSION = 1
SLOTS = 5
FAMILY_NAMES = ("conv1x1", "sep3x3", "pool")
CPU_SHAPE = {"in_channels": 320, "height": 33, "width": 33, "channels": 64, "concat_channels": 64}
TARGETS = ("val_miou", "test_miou", "log_train_seconds")
MIN_CELLS = 100  # below this `bench info` prints n/a (5 folds of < 20 cells rank too noisily; tests/test_bench.py expects n/a at 60 evaluations)
MIN_SOURCE_CELLS = 10  # a source with fewer cells is skipped by leave-one-source-out
DEFAULT_MODEL = "rf"


def _feature_names() -> list[str]:
    names = []
    for s in range(SLOTS):
        names += [f"b{s}_{f}" for f in FAMILY_NAMES]
        names += [f"b{s}_log_rh", f"b{s}_log_rw", f"b{s}_log_gh", f"b{s}_log_gw"]
        names += [f"b{s}_in_F"] + [f"b{s}_in_{i}" for i in range(SLOTS - 1)]
        names += [f"b{s}_depth"]
    names += ["depth", "fanout_F", "leaves", "fanout_1", "fanout_2", "fanout_3plus"]
    names += [f"n_{f}" for f in FAMILY_NAMES]
    names += ["log10_params", "log10_flops"]
    return names


FEATURE_NAMES: tuple[str, ...] = tuple(_feature_names())
N_FEATURES = len(FEATURE_NAMES)
_PER_SLOT = len(FAMILY_NAMES) + 4 + SLOTS + 1  # family one-hot, 4 log sizes, input one-hot (F, 0..3), depth


@lru_cache(maxsize=65536)
def _features_of(canonical: str) -> tuple[float, ...]:
    from dpc.cost import cell_cost
    from dpc.genome import FEATURES, Genome

    g = Genome.parse(canonical)
    if len(g) > SLOTS:
        raise ValueError(f"features cover cells of at most {SLOTS} branches, got {len(g)}")
    x = np.zeros(N_FEATURES)
    depth = []
    children = [0] * len(g)
    fan_f = 0
    counts = dict.fromkeys(FAMILY_NAMES, 0)
    for b, br in enumerate(g.branches):
        kind = br.op.kind
        if kind not in counts:
            raise ValueError(f"unknown op family {kind!r} (features know {', '.join(FAMILY_NAMES)})")
        counts[kind] += 1
        o = b * _PER_SLOT
        x[o + FAMILY_NAMES.index(kind)] = 1.0
        if kind == "sep3x3":
            x[o + 3], x[o + 4] = math.log(br.op.size[0]), math.log(br.op.size[1])
        elif kind == "pool":
            x[o + 5], x[o + 6] = math.log(br.op.size[0]), math.log(br.op.size[1])
        if br.input == FEATURES:
            x[o + 7] = 1.0
            fan_f += 1
            depth.append(1)
        else:
            x[o + 8 + br.input] = 1.0
            children[br.input] += 1
            depth.append(depth[br.input] + 1)
        x[o + 12] = depth[-1]
    o = SLOTS * _PER_SLOT
    cost = cell_cost(g, **CPU_SHAPE)
    x[o:] = [max(depth), fan_f, children.count(0), children.count(1), children.count(2), sum(c >= 3 for c in children),
             *(counts[f] for f in FAMILY_NAMES), math.log10(cost.params), math.log10(cost.flops)]
    return tuple(x)


def features(genome: Any) -> np.ndarray:
    """The fixed-length feature vector (``N_FEATURES`` floats, named by ``FEATURE_NAMES``) of a genome
    (a Genome or its string); equal for equivalent cells (computed on the canonical genome)."""
    from dpc.genome import Genome

    g = Genome.parse(genome) if isinstance(genome, str) else genome
    return np.array(_features_of(str(g.canonical())))


def feature_matrix(genomes: list) -> np.ndarray:
    return np.stack([features(g) for g in genomes]) if genomes else np.zeros((0, N_FEATURES))


# --------------------------------------------------------------------------- records -> cells


def _ok(rec: dict, key: str = "val_miou") -> bool:
    v = rec.get(key)
    return rec.get("error") is None and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _value(rec: dict, target: str) -> Optional[float]:
    if target == "log_train_seconds":
        t = rec.get("train_seconds")
        ok = rec.get("error") is None and isinstance(t, (int, float)) and math.isfinite(t) and t > 0
        return math.log(t) if ok else None
    return float(rec[target]) if _ok(rec, target) else None


def cells_of(records: list[dict]) -> list[dict]:
    """One entry per cell with a finite val mIOU: genome, canonical hash, source (of its first
    non-reseed record), and per target {seed: value}; sorted by canonical hash."""
    cells: dict[str, dict] = {}
    for rec in records:
        c = cells.setdefault(rec["canonical_hash"], {"hash": rec["canonical_hash"], "genome": rec["genome"],
                                                     "source": None, **{t: {} for t in TARGETS}})
        if c["source"] is None and rec.get("source") not in (None, "reseed"):
            c["source"] = rec["source"]
        for t in TARGETS:
            v = _value(rec, t)
            if v is not None:
                c[t][int(rec["seed"])] = v
    out = []
    for h in sorted(cells):
        c = cells[h]
        if c["val_miou"]:
            c["source"] = c["source"] or "reseed"
            out.append(c)
    return out


def pooled_std(groups: list[list[float]]) -> float:
    """sqrt(sum over groups of squared deviations from the group mean / sum(n - 1)); groups of < 2 ignored; NaN if none."""
    ss, dof = 0.0, 0
    for g in groups:
        if len(g) >= 2:
            a = np.asarray(g, dtype=float)
            ss += float(((a - a.mean()) ** 2).sum())
            dof += len(a) - 1
    return math.sqrt(ss / dof) if dof else math.nan


# --------------------------------------------------------------------------- model


def make_model(name: str = DEFAULT_MODEL, seed: int = 0):
    if name == "rf":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_estimators=100, min_samples_leaf=2, max_features=0.5, n_jobs=1, random_state=seed)
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, min_samples_leaf=5, l2_regularization=1.0,
                                             random_state=seed)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


MODELS = ("rf", "hgb")


class FlatForest:
    """A fitted RandomForestRegressor as flat node arrays, walked for all trees at once with numpy.

    sklearn's predict dispatches each tree through joblib: ~40 ms for one cell, the whole cost of a
    bench query; this takes well under a millisecond. Same splits (X cast to float32 as sklearn's
    trees do) and the mean of the same leaves: equal to ``forest.predict`` up to summation order.
    """

    def __init__(self, forest: Any):
        trees = [e.tree_ for e in forest.estimators_]
        offsets = np.cumsum([0] + [t.node_count for t in trees[:-1]])
        self.roots = offsets
        self.left = np.concatenate([np.where(t.children_left >= 0, t.children_left + o, -1) for t, o in zip(trees, offsets)])
        self.right = np.concatenate([np.where(t.children_right >= 0, t.children_right + o, -1) for t, o in zip(trees, offsets)])
        self.feature = np.concatenate([np.maximum(t.feature, 0) for t in trees])
        self.threshold = np.concatenate([t.threshold for t in trees])
        self.value = np.concatenate([t.value[:, 0, 0] for t in trees])

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32).astype(np.float64)
        node = np.tile(self.roots, (len(X), 1))
        rows = np.arange(len(X))[:, None]
        while True:
            inner = self.left[node] >= 0
            if not inner.any():
                return self.value[node].mean(axis=1)
            go_left = X[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)


class Surrogate:
    """A fitted regressor per target (those with >= 2 cells), and the pooled seed std per target."""

    def __init__(self, models: dict, sigma: dict, model_name: str, n_cells: int, digest: str):
        self.models, self.sigma, self.model_name = models, sigma, model_name
        self.n_cells, self.digest, self.feature_version = n_cells, digest, FEATURE_VERSION

    def predict(self, genome: Any, rng: Optional[np.random.Generator] = None, target: str = "val_miou") -> float:
        """The predicted mean over seeds; with ``rng``, a draw of one seed (as ``sample``)."""
        if rng is not None:
            return self.sample(genome, rng, target)
        return float(self.predict_many([genome], target)[0])

    def predict_many(self, genomes: list, target: str = "val_miou") -> np.ndarray:
        if self.feature_version != FEATURE_VERSION:
            raise ValueError(f"model has feature version {self.feature_version}, this code {FEATURE_VERSION}")
        if target not in self.models:
            raise KeyError(f"no model for {target!r} (fitted: {', '.join(self.models)})")
        model = self.models[target]
        if type(model).__name__ == "RandomForestRegressor":
            flat = self.__dict__.setdefault("_flat", {})
            if target not in flat:
                flat[target] = FlatForest(model)
            model = flat[target]
        return model.predict(feature_matrix(genomes))

    def sample(self, genome: Any, rng: np.random.Generator, target: str = "val_miou") -> float:
        """The mean plus N(0, sigma), sigma the pooled seed std (0 if it could not be estimated)."""
        s = self.sigma.get(target, math.nan)
        return self.predict(genome, target=target) + (float(rng.normal(0.0, s)) if math.isfinite(s) else 0.0)


def digest(records: list[dict]) -> str:
    rows = sorted((str(r.get("canonical_hash")), int(r.get("seed", 0)), r.get("val_miou"), r.get("test_miou"),
                   r.get("train_seconds")) for r in records)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def _fit_cells(cells: list[dict], target: str, model: str, seed: int, seeds: Optional[tuple] = None):
    """A regressor on the per-cell mean (over ``seeds``, default all) of ``target``; None below 2 cells."""
    xs, ys = [], []
    for c in cells:
        vals = [v for s, v in c[target].items() if seeds is None or s in seeds]
        if vals:
            xs.append(features(c["genome"]))
            ys.append(float(np.mean(vals)))
    if len(ys) < 2:
        return None
    return make_model(model, seed).fit(np.stack(xs), np.array(ys))


def fit(records: list[dict], model: str = DEFAULT_MODEL, seed: int = 0) -> Surrogate:
    """Fit the surrogate on every cell with a val mIOU (per-cell means over seeds)."""
    cells = cells_of(records)
    if len(cells) < 2:
        raise ValueError(f"need at least 2 cells with a val mIOU, got {len(cells)}")
    models, sigma = {}, {}
    for t in TARGETS:
        m = _fit_cells(cells, t, model, seed)
        if m is not None:
            models[t] = m
        sigma[t] = pooled_std([list(c[t].values()) for c in cells])
    return Surrogate(models, sigma, model, len(cells), digest(records))


# --------------------------------------------------------------------------- validation


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from scipy import stats

    if len(y) < 3 or np.ptp(y) == 0 or np.ptp(p) == 0:
        return {"n": int(len(y)), "spearman": math.nan, "kendall": math.nan, "r2": math.nan}
    ss = float(((y - y.mean()) ** 2).sum())
    return {"n": int(len(y)), "spearman": float(stats.spearmanr(y, p).statistic),
            "kendall": float(stats.kendalltau(y, p).statistic), "r2": 1.0 - float(((y - p) ** 2).sum()) / ss}


def _means(cells: list[dict], target: str = "val_miou") -> np.ndarray:
    return np.array([float(np.mean(list(c[target].values()))) for c in cells])


def kfold_predictions(cells: list[dict], folds: int = 5, seed: int = 0, model: str = DEFAULT_MODEL,
                      target: str = "val_miou", train_seeds: Optional[tuple] = None) -> np.ndarray:
    """Out-of-fold predictions of every cell (random K-fold by cell)."""
    from sklearn.model_selection import KFold

    pred = np.full(len(cells), math.nan)
    k = max(2, min(folds, len(cells)))
    for train, test in KFold(n_splits=k, shuffle=True, random_state=seed).split(np.arange(len(cells))):
        m = _fit_cells([cells[i] for i in train], target, model, seed, train_seeds)
        if m is not None:
            pred[test] = m.predict(feature_matrix([cells[i]["genome"] for i in test]))
    return pred


def heldout_spearman(records: list[dict], folds: int = 5, seed: int = 0, model: str = DEFAULT_MODEL,
                     min_cells: int = MIN_CELLS) -> float:
    """K-fold held-out Spearman of val mIOU (per-cell means); NaN below ``min_cells`` cells."""
    cells = cells_of(records)
    if len(cells) < min_cells:
        return math.nan
    return _scores(_means(cells), kfold_predictions(cells, folds, seed, model))["spearman"]


def validate(records: list[dict], folds: int = 5, seed: int = 0, model: str = DEFAULT_MODEL) -> dict[str, Any]:
    """Held-out quality of the val mIOU surrogate and the seed-to-seed ceiling.

    Keys: ``cells``, ``model``, ``sigma`` (pooled seed std of val mIOU); ``kfold`` (scores of the
    out-of-fold predictions against the per-cell means); ``loso`` ({source: scores} for each source
    with >= MIN_SOURCE_CELLS cells, trained on every other cell) and ``loso_skipped`` ({source: cells});
    ``seed_ceiling`` (seed 0 against seed 1 over the cells that have both) and ``seed_surrogate``
    (a surrogate trained on seed-0 values only, K-fold by cell, against seed 1 on the same cells:
    the issue's goal is seed_surrogate >= seed_ceiling). Scores: n, spearman, kendall, r2.
    """
    cells = cells_of(records)
    out: dict[str, Any] = {"cells": len(cells), "model": model,
                           "sigma": pooled_std([list(c["val_miou"].values()) for c in cells])}
    y = _means(cells)
    out["kfold"] = _scores(y, kfold_predictions(cells, folds, seed, model)) if len(cells) >= folds else _scores(y[:0], y[:0])

    by_source: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cells):
        by_source[c["source"]].append(i)
    out["loso"], out["loso_skipped"] = {}, {}
    for src in sorted(by_source):
        idx = by_source[src]
        rest = [i for i in range(len(cells)) if i not in set(idx)]
        if len(idx) < MIN_SOURCE_CELLS or len(rest) < MIN_SOURCE_CELLS:
            out["loso_skipped"][src] = len(idx)
            continue
        m = _fit_cells([cells[i] for i in rest], "val_miou", model, seed)
        out["loso"][src] = _scores(y[idx], m.predict(feature_matrix([cells[i]["genome"] for i in idx])))

    both = [i for i, c in enumerate(cells) if 0 in c["val_miou"] and 1 in c["val_miou"]]
    s0 = np.array([cells[i]["val_miou"][0] for i in both])
    s1 = np.array([cells[i]["val_miou"][1] for i in both])
    out["seed_ceiling"] = _scores(s1, s0)
    seed0 = [c for c in cells if 0 in c["val_miou"]]
    if len(both) >= 3 and len(seed0) >= folds:
        pred = kfold_predictions(seed0, folds, seed, model, train_seeds=(0,))
        pos = {c["hash"]: j for j, c in enumerate(seed0)}
        out["seed_surrogate"] = _scores(s1, np.array([pred[pos[cells[i]["hash"]]] for i in both]))
    else:
        out["seed_surrogate"] = _scores(s1[:0], s1[:0])
    return out


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def table(results: list[dict]) -> str:
    """A markdown table of one or more ``validate`` results (one per model)."""
    lines = ["| model | split | cells | Spearman | Kendall tau | R^2 |", "|---|---|---:|---:|---:|---:|"]
    for r in results:
        rows = [("K-fold by cell", r["kfold"])]
        rows += [(f"leave out {s}", v) for s, v in r["loso"].items()]
        rows += [("seed-0 surrogate vs seed 1", r["seed_surrogate"]), ("ceiling: seed 0 vs seed 1", r["seed_ceiling"])]
        for name, sc in rows:
            lines.append(f"| {r['model']} | {name} | {sc['n']} | {_fmt(sc['spearman'])} | {_fmt(sc['kendall'])} | {_fmt(sc['r2'])} |")
    r = results[0]
    notes = [f"cells: {r['cells']}; pooled seed std of val mIOU: {_fmt(r['sigma'])}"]
    if r["loso_skipped"]:
        notes.append("leave-one-source-out skipped (< %d cells): " % MIN_SOURCE_CELLS
                     + ", ".join(f"{s} ({n})" for s, n in r["loso_skipped"].items()))
    return "\n".join(lines + [""] + notes)


# --------------------------------------------------------------------------- CLI


def _directory(data: str) -> Path:
    """``data`` itself if it holds shards, else its only subdirectory that does."""
    p = Path(data)
    if any(p.glob("*.jsonl")):
        return p
    subs = sorted(d for d in p.iterdir() if d.is_dir() and any(d.glob("*.jsonl"))) if p.is_dir() else []
    if len(subs) != 1:
        raise SystemExit(f"{data}: expected one records directory, found {len(subs)}: " + ", ".join(d.name for d in subs)
                         + " (pass --data bench/records/DIR)")
    return subs[0]


def main(argv: Optional[list[str]] = None) -> int:
    from benchmarks.bench import DEFAULT_DATA, read_records

    p = argparse.ArgumentParser(prog="python -m benchmarks.surrogate", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="held-out quality table (markdown)")
    f = sub.add_parser("fit", help="fit on every cell and save the model")
    for q in (v, f):
        q.add_argument("--data", default=DEFAULT_DATA, help=f"a records directory (default: the only one under {DEFAULT_DATA})")
        q.add_argument("--seed", type=int, default=0)
    v.add_argument("--folds", type=int, default=5)
    v.add_argument("--model", default=DEFAULT_MODEL, choices=("all",) + MODELS, help=f"all: compare {', '.join(MODELS)} (default {DEFAULT_MODEL})")
    f.add_argument("--model", default=DEFAULT_MODEL, choices=MODELS)
    f.add_argument("--out", required=True, help="pickle file to write")
    args = p.parse_args(argv)
    directory = _directory(args.data)
    records = read_records(directory)
    if args.command == "validate":
        names = MODELS if args.model == "all" else (args.model,)
        print(f"{directory.name}\n")
        print(table([validate(records, args.folds, args.seed, m) for m in names]))
        return 0
    s = fit(records, args.model, args.seed)
    import sklearn

    payload = {"surrogate": s, "feature_version": FEATURE_VERSION, "feature_names": FEATURE_NAMES,
               "data_digest": s.digest, "directory": directory.name, "cells": s.n_cells, "model": s.model_name,
               "sklearn": sklearn.__version__, "evaluations": len(records)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as fh:
        pickle.dump(payload, fh)
    print(f"wrote {args.out}: {s.model_name} on {s.n_cells} cells (data digest {s.digest}, feature version {FEATURE_VERSION})")
    return 0


def load(path: "str | Path") -> Surrogate:
    """The Surrogate of a ``fit --out`` file (pickle: load only files you trust); checks the feature version."""
    with open(path, "rb") as fh:
        payload = pickle.load(fh)
    if payload.get("feature_version") != FEATURE_VERSION:
        raise ValueError(f"{path}: feature version {payload.get('feature_version')}, this code {FEATURE_VERSION}")
    return payload["surrogate"]


if __name__ == "__main__":
    sys.exit(main())
