"""Cheap predictors of a cell's quality, as baselines for DPC-Bench (item 5 of the bench issue).

Each predictor scores a cell without training it:

- ``synflow`` (Tanaka et al. 2020): the head (cell + 1x1 classifier) with absolute-valued
  weights, BN in eval mode and no dropout, on an all-ones input in double precision;
  R = sum of the output, score = sum over parameters of |theta * dR/dtheta|.
- ``naswot`` (Mellor et al. 2021, "NAS without training"): the binary codes of every ReLU's
  activations over a minibatch, K[i, j] = number of units on which inputs i and j agree,
  score = log|det K| (``slogdet``); -inf when two inputs give the same code.
- ``params`` and ``flops``: ``dpc.cost.cell_cost``.

``python -m benchmarks.zero_cost [--data bench/records/DIR]`` scores every cell of a bench
directory and prints each predictor's Spearman rho against the per-cell mean val and test
mIOU, with its cost in ms per cell ("n/a" below 5 cells or for a constant predictor). NASWOT
sees a seeded minibatch of the cached train features of the records' scene set (``--features
train``, the default: it is a statement about the data) or seeded random normal features
(``--features random``, no dataset needed); synflow's input is all ones either way.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from torch import nn

from benchmarks.bench import DEFAULT_DATA, read_records
from dpc.cost import cell_cost
from dpc.genome import Genome, parse_genome
from proxy.config import EvalConfig, get_config
from proxy.train import SegmentationHead

NUM_CLASSES = 11
IN_CHANNELS = 320  # lite0's features at output stride 16
HW = (33, 33)
BATCH = 8
MIN_CELLS = 5
PREDICTORS = ("synflow", "naswot", "params", "flops")


def _genome(genome: "Genome | str") -> Genome:
    return genome if isinstance(genome, Genome) else parse_genome(genome)


def _head(genome: Genome, cfg: EvalConfig, in_channels: int, seed: int, dtype: torch.dtype) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SegmentationHead(genome, in_channels, NUM_CLASSES, cfg)
    return model.to(dtype)


def synflow(genome: "Genome | str", cfg: "EvalConfig | str", in_channels: int = IN_CHANNELS,
            hw: tuple[int, int] = HW, seed: int = 0) -> float:
    """SynFlow score of the head of ``genome`` (see the module docstring)."""
    model = _head(_genome(genome), get_config(cfg), in_channels, seed, torch.float64)
    model.eval()  # BN uses its (initial) running statistics and dropout is off: the network stays linear
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    x = torch.ones(1, in_channels, *hw, dtype=torch.float64)
    model.zero_grad()
    torch.sum(model(x)).backward()
    score = sum(float((p.detach() * p.grad).abs().sum()) for p in model.parameters() if p.grad is not None)
    return float(score)


def naswot(genome: "Genome | str", cfg: "EvalConfig | str", features: torch.Tensor,
           labels: Optional[torch.Tensor] = None, seed: int = 0) -> float:
    """log|det K| of the ReLU-code agreement matrix over the batch ``features`` (N, C, h, w).

    ``labels`` is accepted for a uniform predictor signature; the score does not use them.
    BN normalises with the batch statistics (as at the start of training); dropout is off.
    """
    del labels
    if features.dim() != 4 or features.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, C, h, w), got {tuple(features.shape)}")
    x = features.detach().to(torch.float32)
    model = _head(_genome(genome), get_config(cfg), x.shape[1], seed, torch.float32)
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    codes: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        codes.append((output.detach() > 0).flatten(1).to(torch.float64))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not codes:
        raise ValueError("the head has no ReLU")
    c = torch.cat(codes, dim=1)
    k = c @ c.t() + (1 - c) @ (1 - c).t()
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if float(sign) != 0 else -math.inf


# --------------------------------------------------------------------------- bench table


def _config_of(records: list[dict]) -> EvalConfig:
    for rec in records:
        d = rec.get("config_dict")
        if isinstance(d, dict):
            try:
                return EvalConfig(**d)
            except (TypeError, ValueError):
                pass
        if isinstance(rec.get("config"), str):
            try:
                return get_config(rec["config"])
            except ValueError:
                pass
    return get_config("cpu")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def cells_of(records: Iterable[dict]) -> dict[str, dict]:
    """genome string -> {"genome", "val", "test"}: mean mIOUs over the successful seeds (by canonical hash)."""
    cells: dict[str, dict] = {}
    for rec in records:
        if rec.get("error") is not None or not _finite(rec.get("val_miou")):
            continue
        g = _genome(rec["genome"])
        c = cells.setdefault(g.canonical_hash(), {"genome": g, "val": [], "test": []})
        c["val"].append(float(rec["val_miou"]))
        if _finite(rec.get("test_miou")):
            c["test"].append(float(rec["test_miou"]))
    return {k: {"genome": c["genome"], "val": statistics.fmean(c["val"]),
                "test": statistics.fmean(c["test"]) if c["test"] else math.nan} for k, c in cells.items()}


def _spearman(x: list[float], y: list[float]) -> float:
    from scipy import stats

    pairs = [(a, b) for a, b in zip(x, y) if not math.isnan(a) and not math.isnan(b)]
    if len(pairs) < MIN_CELLS:
        return math.nan
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan
    return float(stats.spearmanr(xs, ys).statistic)


def score_records(dir_or_records: "str | Path | Iterable[dict]", cfg: "EvalConfig | str | None" = None,
                  in_channels: int = IN_CHANNELS, hw: tuple[int, int] = HW, batch: int = BATCH, seed: int = 0,
                  features: Optional[torch.Tensor] = None) -> list[dict]:
    """One row per predictor: {"predictor", "spearman_val", "spearman_test", "ms_per_cell", "cells"}.

    ``features`` (N, C, h, w), e.g. a batch of cached backbone features, feeds naswot; by default a
    seeded random normal batch of ``batch`` x ``in_channels`` x ``hw``. The cell config is the
    records' (``config_dict``) unless ``cfg`` is given.
    """
    if isinstance(dir_or_records, (str, Path)):
        records = read_records(dir_or_records)
    else:
        records = list(dir_or_records)
    cfg = _config_of(records) if cfg is None else get_config(cfg)
    if features is None:
        gen = torch.Generator().manual_seed(seed)
        features = torch.randn(batch, in_channels, *hw, generator=gen)
    else:
        in_channels, hw = features.shape[1], tuple(features.shape[-2:])
    cells = list(cells_of(records).values())
    scores: dict[str, list[float]] = {p: [] for p in PREDICTORS}
    seconds: dict[str, float] = {p: 0.0 for p in PREDICTORS}
    for c in cells:
        g = c["genome"]
        for name in PREDICTORS:
            t0 = time.perf_counter()
            if name == "synflow":
                s = synflow(g, cfg, in_channels, hw, seed=seed)
            elif name == "naswot":
                s = naswot(g, cfg, features, seed=seed)
            else:
                cost = cell_cost(g, in_channels, hw[0], hw[1], cfg.channels, cfg.concat_channels)
                s = float(cost.params if name == "params" else cost.flops)
            seconds[name] += time.perf_counter() - t0
            scores[name].append(s)
    val = [c["val"] for c in cells]
    test = [c["test"] for c in cells]
    return [{
        "predictor": name,
        "spearman_val": _spearman(scores[name], val),
        "spearman_test": _spearman(scores[name], test),
        "ms_per_cell": 1000 * seconds[name] / len(cells) if cells else math.nan,
        "cells": len(cells),
    } for name in PREDICTORS]


def markdown(rows: list[dict]) -> str:
    def f(x: float, spec: str) -> str:
        return "n/a" if math.isnan(x) else format(x, spec)

    lines = ["| predictor | Spearman vs val | Spearman vs test | ms per cell | cells |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['predictor']} | {f(r['spearman_val'], '.2f')} | {f(r['spearman_test'], '.2f')} | "
                     f"{f(r['ms_per_cell'], '.1f')} | {r['cells']} |")
    return "\n".join(lines)


def train_features(cfg: EvalConfig, batch: int, seed: int = 0, scene_key: Optional[str] = None,
                   cache_dir: "str | Path | None" = None) -> torch.Tensor:
    """``batch`` seeded images' cached backbone features from the train split of ``cfg``'s scene
    set, built if missing; refuses when that scene set is not ``scene_key`` (the records')."""
    from proxy.cache import load_or_build
    from proxy.sources import load_datasets

    train = load_datasets(None, cfg.scenes, cache_dir)[0]
    if scene_key is not None and f"scenes-{scene_key}-" not in train.name:
        raise ValueError(f"the records' scene set is {scene_key}, this machine builds {train.name}: "
                         "use --features random or the records of this scene set")
    cached = load_or_build(train, cfg.backbone, cfg.output_stride, cache_dir=cache_dir, progress=False)
    index = torch.randperm(len(cached), generator=torch.Generator().manual_seed(seed))[:batch].sort().values
    return torch.from_numpy(cached.features[index.numpy()].astype("float32"))


def _directories(path: Path) -> list[Path]:
    if any(path.glob("*.jsonl")):
        return [path]
    return sorted(d for d in path.iterdir() if d.is_dir() and any(d.glob("*.jsonl"))) if path.is_dir() else []


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.zero_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help=f"a bench directory, or a root of them (default {DEFAULT_DATA})")
    p.add_argument("--config", default=None, help="cell config (default: the records')")
    p.add_argument("--in-channels", type=int, default=IN_CHANNELS, help=f"feature channels (default {IN_CHANNELS})")
    p.add_argument("--hw", type=int, nargs=2, default=list(HW), metavar=("H", "W"), help="feature size (default 33 33)")
    p.add_argument("--batch", type=int, default=BATCH, help=f"naswot minibatch (default {BATCH})")
    p.add_argument("--features", choices=("train", "random"), default="train",
                   help="naswot's input: cached train features of the records' scene set (default) or random normal")
    p.add_argument("--cache-dir", default=None, help="dataset and feature cache (default: the project's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    dirs = _directories(Path(args.data))
    if not dirs:
        print(f"no records under {args.data}")
        return 1
    for d in dirs:
        features = None
        if args.features == "train":
            records = read_records(d)
            cfg = _config_of(records) if args.config is None else get_config(args.config)
            keys = {r.get("scene_key") for r in records} - {None}
            try:
                features = train_features(cfg, args.batch, args.seed, keys.pop() if len(keys) == 1 else None,
                                          args.cache_dir)
            except ValueError as e:
                print(f"python -m benchmarks.zero_cost: error: {e}", file=sys.stderr)
                return 2
        rows = score_records(d, args.config, args.in_channels, tuple(args.hw), args.batch, args.seed, features)
        print(f"{d.name}" + (f" (naswot on {args.batch} cached train images)" if features is not None else ""))
        print(markdown(rows))
        if rows[0]["cells"] < MIN_CELLS:
            print(f"(Spearman n/a: {rows[0]['cells']} cell(s), fewer than {MIN_CELLS})")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
