"""Figures for a paper: each function draws one figure, saves it as PNG and SVG, and
returns the data it plotted (so tests, and the report's tables, use exactly those numbers).

Reference cells (the zoo's ASPP and the paper's top-1, evaluated with the same objective)
are drawn as horizontal lines wherever the y axis is the objective.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401
import numpy as np  # noqa: E402

from .curves import Run, _strategy_key, band_by_compute, band_by_evaluations, band_by_time  # noqa: E402
from .load import TrialRecord  # noqa: E402

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("png", "svg")
STRATEGY_COLOURS = {"random": "#7f7f7f", "local": "#1f77b4", "evolution": "#2ca02c", "tpe": "#d62728"}
REFERENCE_STYLES = {"aspp": dict(color="#9467bd", ls="--"), "top1_cityscapes": dict(color="#8c564b", ls=":")}
GROUP_COLOURS = {"top": "#d62728", "random": "#1f77b4"}
OUTSIDE = dict(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)  # legends beside the axes
# Cost of a cell when the objective measured none (e.g. the synthetic one): Table 1's
# setting, a 65x129 map of 320 channels, 256 channels per op and after the projection.
ANALYTIC_SHAPE = dict(in_channels=320, height=65, width=129, channels=256, concat_channels=256)

plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8,
                     "savefig.bbox": "tight", "axes.spines.top": False, "axes.spines.right": False})


@dataclass(frozen=True)
class Reference:
    """A reference cell's result under the compared objective."""

    name: str
    value: float  # val: its evaluation with the searches' training seed
    n_params: int | None = None
    flops: int | None = None
    genome: str | None = None
    test: list[float] | None = None  # test value of each fresh-seed training (None: no test split scored)

    @property
    def test_mean(self) -> float | None:
        return float(np.mean(self.test)) if self.test else None

    @property
    def test_std(self) -> float | None:
        return (float(np.std(self.test, ddof=1)) if len(self.test) > 1 else 0.0) if self.test else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "n_params": self.n_params, "flops": self.flops,
                "genome": self.genome, "test": self.test, "test_mean": self.test_mean, "test_std": self.test_std}


def colour(strategy: str, i: int = 0) -> str:
    return STRATEGY_COLOURS.get(strategy, plt.get_cmap("tab10")(i % 10))


def save(fig: "plt.Figure", out: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``out``.{png,svg} (any suffix of ``out`` is replaced) and close the figure."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = out.with_suffix(f".{fmt}")
        fig.savefig(p, dpi=160, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths


def _reference_lines(ax, references: Iterable[Reference], what: str = "reference") -> list[dict]:
    drawn = []
    for ref in references:
        if ref.value is None or not math.isfinite(ref.value):
            continue
        style = REFERENCE_STYLES.get(ref.name, dict(color="black", ls=(0, (3, 1, 1, 1))))
        ax.axhline(ref.value, lw=1.2, label=f"{ref.name} ({what})", **style, zorder=1)
        drawn.append({"name": ref.name, "value": ref.value})
    return drawn


# -- best so far ----------------------------------------------------------------------------
def plot_best_so_far(
    runs: Mapping[str, Mapping[int, Run]],
    out: str | Path,
    x: str = "evaluations",
    references: Iterable[Reference] = (),
    budget: int | None = None,
    ylabel: str = "best mIOU so far",
    title: str | None = None,
) -> dict[str, Any]:
    """Median best-so-far per strategy with its inter-quartile band, vs evaluations, seconds or compute
    (full-evaluation equivalents: pruned trials count their part)."""
    if x not in ("evaluations", "seconds", "compute"):
        raise ValueError(f"x must be 'evaluations', 'seconds' or 'compute', got {x!r}")
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    data: dict[str, Any] = {"x": x, "strategies": {}}
    t_max = None
    if x == "seconds":
        ends = [float(np.nanmax(r.elapsed)) for rs in runs.values() for r in rs.values() if np.isfinite(r.elapsed).any()]
        t_max = max(ends, default=0.0)
    scale, unit = (3600.0, "h") if x == "seconds" and t_max > 7200 else (1.0, "s")
    for i, (strategy, by_seed) in enumerate(runs.items()):
        band = (band_by_evaluations(by_seed, budget) if x == "evaluations" else band_by_compute(by_seed) if x == "compute"
                else band_by_time(by_seed, t_max=t_max))
        c = colour(strategy, i)
        drawstyle = "steps-post"
        ax.plot(band.x / scale, band.median, color=c, lw=1.8, drawstyle=drawstyle, label=f"{strategy} (n={len(by_seed)})", zorder=3)
        ax.fill_between(band.x / scale, band.q25, band.q75, color=c, alpha=0.18, step="post", lw=0, zorder=2)
        data["strategies"][strategy] = band.to_dict()
    data["references"] = _reference_lines(ax, references)
    simulated = any(r.simulated for rs in runs.values() for r in rs.values())
    ax.set_xlabel("evaluations" if x == "evaluations" else "compute (full-evaluation equivalents)" if x == "compute"
                  else f"simulated training time ({unit})" if simulated else f"wall-clock time ({unit})")
    if x == "evaluations":
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"Best so far (median, IQR band) vs {x if x != 'seconds' else 'time'}")
    ax.grid(alpha=0.3)
    ax.legend(**OUTSIDE)
    data["files"] = [str(p) for p in save(fig, out)]
    return data


def plot_final_best(
    final: Mapping[str, Mapping[int, float]],
    out: str | Path,
    references: Iterable[Reference] = (),
    ylabel: str = "best mIOU at budget",
    title: str = "Final incumbent per seed",
) -> dict[str, Any]:
    """Box plot of the incumbent at the budget per strategy, every seed drawn as a dot."""
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    names = list(final)
    values = [[v for v in final[s].values() if v is not None and math.isfinite(v)] for s in names]
    ax.boxplot(values, widths=0.5, showfliers=False, medianprops=dict(color="black"))
    ax.set_xticks(range(1, len(names) + 1), names)
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    for i, (s, v) in enumerate(zip(names, values)):
        ax.scatter(i + 1 + rng.uniform(-0.12, 0.12, len(v)), v, s=14, color=colour(s, i), alpha=0.8, zorder=3)
    refs = _reference_lines(ax, references)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if refs:
        ax.legend(**OUTSIDE)
    return {"strategies": {s: v for s, v in zip(names, values)}, "references": refs,
            "files": [str(p) for p in save(fig, out)]}


def plot_test_values(
    incumbents: Mapping[str, Mapping[int, Mapping[str, Any]]],
    out: str | Path,
    references: Iterable[Reference] = (),
    metric: str = "mIOU",
    title: str = "Incumbents: val that selected them, test re-trained",
) -> dict[str, Any]:
    """Per strategy, each seed's incumbent: its val (hollow, what the search saw) joined to its
    test value (filled: mean over the fresh-seed re-trainings, bar = their std); a black tick
    marks the strategy's mean test value; references at their test mean (lines).

    ``incumbents[strategy][seed]`` holds ``val`` and ``test`` (a list, empty when none).
    """
    names = [s for s in incumbents if any(inc.get("test") for inc in incumbents[s].values())]
    fig, ax = plt.subplots(figsize=(1.3 * max(len(names), 2) + 2.4, 3.8))
    data: dict[str, Any] = {"strategies": {}}
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    dx = 0.17
    for i, s in enumerate(names):
        c = colour(s, i)
        rows = [(seed, inc) for seed, inc in sorted(incumbents[s].items()) if inc.get("test")]
        jit = rng.uniform(-0.05, 0.05, len(rows))
        vals = [float(inc["val"]) for _, inc in rows]
        means = [float(np.mean(inc["test"])) for _, inc in rows]
        stds = [float(np.std(inc["test"], ddof=1)) if len(inc["test"]) > 1 else 0.0 for _, inc in rows]
        for j, (v, m) in enumerate(zip(vals, means)):
            ax.plot([i - dx + jit[j], i + dx + jit[j]], [v, m], color=c, lw=0.7, alpha=0.45, zorder=2)
        ax.scatter(np.full(len(vals), i - dx) + jit, vals, s=22, facecolors="none", edgecolors=c, lw=1.1, zorder=3)
        ax.errorbar(np.full(len(means), i + dx) + jit, means, yerr=stds, fmt="o", ms=4.5, color=c, elinewidth=1,
                    capsize=2, zorder=4)
        if means:
            ax.hlines(float(np.mean(means)), i + dx - 0.13, i + dx + 0.13, color="black", lw=2, zorder=5)
        data["strategies"][s] = {"seeds": [seed for seed, _ in rows], "val": vals, "test_mean": means, "test_std": stds}
    test_refs = [Reference(r.name, r.test_mean) for r in references if r.test]
    data["references"] = _reference_lines(ax, test_refs, "reference, test")
    # legend entries in black: the colours are the strategies'
    ax.scatter([], [], s=22, facecolors="none", edgecolors="black", lw=1.1, label="val that selected it (search seed)")
    ax.errorbar([], [], yerr=[], fmt="o", ms=4.5, color="black", elinewidth=1, capsize=2,
                label="test, re-trained (mean ± std over fresh seeds)")
    ax.plot([], [], color="black", lw=2, label="mean test over search seeds")
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(**OUTSIDE)
    data["files"] = [str(p) for p in save(fig, out)]
    return data


# -- cost vs quality ---------------------------------------------------------------------------
def pareto_front(costs: Sequence[float], values: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (cost <= and value >=, one strictly),
    sorted by cost: the cheapest way to reach each level of mIOU."""
    c = np.asarray(costs, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.flatnonzero(np.isfinite(c) & np.isfinite(v))
    order = sorted(ok, key=lambda i: (c[i], -v[i]))
    front, best = [], -math.inf
    for i in order:
        if v[i] > best:
            front.append(int(i))
            best = v[i]
    return front


def record_cost(r: TrialRecord, cost: str, analytic: Callable[[str], tuple[int, int]] | None = None) -> float:
    """The evaluator's measured cost, else the analytic one from the genome (or NaN)."""
    measured = r.flops if cost == "flops" else r.n_params
    if measured is not None:
        return float(measured)
    if analytic is not None and r.genome:
        params, flops = analytic(r.genome)
        return float(flops if cost == "flops" else params)
    return math.nan


def analytic_cost(genome: str, shape: Mapping[str, int] | None = None) -> tuple[int, int]:
    """(params, FLOPs) of a genome string at ``shape`` (default: Table 1's setting)."""
    from dpc.cost import cell_cost
    from dpc.genome import Genome

    s = dict(ANALYTIC_SHAPE if shape is None else shape)
    c = cell_cost(Genome.parse(genome), s["in_channels"], s["height"], s["width"], s["channels"], s["concat_channels"])
    return c.params, c.flops


def plot_cost_vs_miou(
    records: Sequence[TrialRecord],
    out: str | Path,
    cost: str = "flops",
    references: Iterable[Reference] = (),
    ylabel: str = "mIOU",
    analytic: bool = True,
) -> dict[str, Any]:
    """Every completed cell, coloured by strategy, with the Pareto front (min cost, max mIOU).

    Costs are the evaluator's measurements; when a trial has none (synthetic objective)
    the analytic cost at Table 1's setting is used and the axis says so.
    """
    if cost not in ("flops", "params"):
        raise ValueError(f"cost must be 'flops' or 'params', got {cost!r}")
    done = [r for r in records if r.complete]
    measured = any((r.flops if cost == "flops" else r.n_params) is not None for r in done)
    fn = analytic_cost if (analytic and not measured) else None
    xs = np.array([record_cost(r, cost, fn) for r in done])
    ys = np.array([r.value for r in done])
    scale = 1e9 if cost == "flops" else 1e6
    unit = "GFLOPs" if cost == "flops" else "M params"
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    groups = sorted({r.strategy or r.study for r in done}, key=_strategy_key)
    for i, g in enumerate(groups):
        m = np.array([(r.strategy or r.study) == g for r in done], dtype=bool)
        ax.scatter(xs[m] / scale, ys[m], s=10, alpha=0.55, color=colour(g, i), label=g, lw=0)
    front = pareto_front(xs, ys)
    if front:
        ax.plot(xs[front] / scale, ys[front], color="black", lw=1.3, drawstyle="steps-post", label="Pareto front", zorder=4)
        ax.scatter(xs[front] / scale, ys[front], s=22, facecolor="none", edgecolor="black", zorder=5)
    refs = []
    for ref in references:
        rc = ref.flops if cost == "flops" else ref.n_params
        if rc is None and fn is not None and ref.genome:
            rc = fn(ref.genome)[1 if cost == "flops" else 0]
        if ref.value is None or not math.isfinite(ref.value):
            continue
        style = REFERENCE_STYLES.get(ref.name, dict(color="black", ls="-."))
        ax.axhline(ref.value, lw=1.0, **style, zorder=1)
        if rc is None:
            ax.lines[-1].set_label(f"{ref.name} (reference)")
        else:
            ax.scatter([rc / scale], [ref.value], marker="*", s=120, color=style["color"], edgecolor="black",
                       zorder=6, label=f"{ref.name} (reference)")
        refs.append({"name": ref.name, "value": ref.value, "cost": None if rc is None else float(rc)})
    ax.set_xlabel(f"{unit}" + ("" if measured or not analytic else " (analytic, 65x129 map, 320->256 ch)"))
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel} vs {'FLOPs' if cost == 'flops' else 'parameters'} of the cell")
    ax.grid(alpha=0.3)
    ax.legend(markerscale=1.5, **OUTSIDE)
    return {"cost": cost, "measured": measured, "x": xs.tolist(), "y": ys.tolist(), "front": front,
            "front_points": [(float(xs[i]), float(ys[i])) for i in front], "references": refs,
            "files": [str(p) for p in save(fig, out)]}


# -- what the top cells are made of -------------------------------------------------------------
def choice_counts(genomes: Sequence[Any]) -> dict[str, Any]:
    """Counts of each op, op family, size pair of each two-axis family with a heatmap (``rates``
    of the separable convs, ``grids`` of the pyramid pooling) and branch input."""
    from dpc import ops as table

    ops: Counter[str] = Counter()
    families: Counter[str] = Counter()
    n_branches = max((len(g.branches) for g in genomes), default=5)
    heat = {f.name: np.zeros((len(f.axes[0]), len(f.axes[1])), dtype=int) for f in table.FAMILIES if f.heatmap}
    inputs = np.zeros((n_branches, n_branches), dtype=int)  # [branch, input + 1]: F, 0 .. B-2
    for g in genomes:
        for b, br in enumerate(g.branches):
            ops[br.op.name] += 1
            families[br.op.kind] += 1
            if br.op.kind in heat:
                heat[br.op.kind][br.op.family.coords(br.op)] += 1
            inputs[b, br.input + 1] += 1
    return {"n_cells": len(genomes), "ops": {name: ops.get(name, 0) for name in table.OP_NAMES},
            "families": {f.name: families.get(f.name, 0) for f in table.FAMILIES},
            **{table.FAMILY[name].heatmap[0]: mat.tolist() for name, mat in heat.items()},
            "inputs": inputs.tolist()}


def plot_choice_frequency(genomes: Sequence[Any], out: str | Path, title: str = "Choices among the top cells") -> dict[str, Any]:
    """Panels: op family share vs the uniform prior, one heatmap per two-axis family (separable-conv
    rate pairs, pooling grids), and which input each branch reads (as a fraction of the cells)."""
    from dpc import ops as table

    data = choice_counts(genomes)
    n = max(data["n_cells"], 1)
    maps = [f for f in table.FAMILIES if f.heatmap]
    ratios = [1.1] + [0.5 + 0.1 * len(f.axes[0]) for f in maps] + [1.1]
    fig, axes = plt.subplots(1, len(ratios), figsize=(14 * sum(ratios) / 4.4, 3.6), layout="constrained",
                             gridspec_kw=dict(width_ratios=ratios))
    fam = data["families"]
    total = max(sum(fam.values()), 1)
    prior = {f.name: len(f.ops) / table.NUM_OPS for f in table.FAMILIES}
    xs = np.arange(len(prior))
    axes[0].bar(xs - 0.2, [fam[f] / total for f in prior], 0.4, label="top cells", color="#4c72b0")
    axes[0].bar(xs + 0.2, list(prior.values()), 0.4, label="uniform prior", color="#cccccc")
    axes[0].set_xticks(xs, list(prior))
    axes[0].set_ylabel("share of branches")
    axes[0].legend(frameon=False)
    axes[0].set_title("op family")
    for ax, f in zip(axes[1:], maps):
        key, name = f.heatmap
        im = ax.imshow(np.asarray(data[key]), cmap="Blues", origin="upper")
        ax.set_xticks(range(len(f.axes[1])), f.axes[1])
        ax.set_yticks(range(len(f.axes[0])), f.axes[0])
        ax.set_xlabel("w")
        ax.set_ylabel("h")
        ax.set_title(name)
        fig.colorbar(im, ax=ax, shrink=0.8, label="count")
    ax_in = axes[-1]
    inp = np.asarray(data["inputs"], dtype=float) / n
    # branch b may read inputs -1..b-1, i.e. columns 0..b: mask the impossible cells
    masked = np.ma.masked_array(inp, mask=np.triu(np.ones(inp.shape, dtype=bool), k=1))
    im = ax_in.imshow(masked, cmap="Oranges", vmin=0, vmax=1, origin="upper")
    ax_in.set_xticks(range(inp.shape[1]), ["F"] + [str(i) for i in range(inp.shape[1] - 1)])
    ax_in.set_yticks(range(inp.shape[0]), [f"b{i}" for i in range(inp.shape[0])])
    ax_in.set_xlabel("input")
    ax_in.set_title("input of each branch")
    fig.colorbar(im, ax=ax_in, shrink=0.8, label="fraction of cells")
    fig.suptitle(f"{title} (n={data['n_cells']})")
    data["input_fraction"] = inp.tolist()
    data["files"] = [str(p) for p in save(fig, out)]
    return data


# -- proxy vs full ------------------------------------------------------------------------------
def plot_correlation(
    proxy: Sequence[float],
    full: Sequence[float],
    groups: Sequence[str],
    out: str | Path,
    summary: Mapping[str, Mapping[str, Any]] | None = None,
    xlabel: str = "proxy mIOU",
    ylabel: str = "full-task mIOU",
) -> dict[str, Any]:
    """Scatter of proxy vs full mIOU per group, with each group's Spearman rho in the legend."""
    p = np.asarray(proxy, dtype=float)
    f = np.asarray(full, dtype=float)
    g = np.asarray(groups)
    fig, ax = plt.subplots(figsize=(4.6, 4.8))
    data: dict[str, Any] = {"groups": {}}
    for i, name in enumerate(dict.fromkeys(g.tolist())):
        m = g == name
        label = f"{name} (n={int(m.sum())})"
        rho = (summary or {}).get(name, {}).get("spearman")
        if rho is not None:
            label += f", ρ={rho['estimate']:.2f} [{rho['low']:.2f}, {rho['high']:.2f}]"
        ax.scatter(p[m], f[m], s=22, alpha=0.8, color=GROUP_COLOURS.get(name, plt.get_cmap("tab10")(i)), label=label,
                   edgecolor="white", lw=0.5)
        data["groups"][name] = {"proxy": p[m].tolist(), "full": f[m].tolist()}
    ok = np.isfinite(p) & np.isfinite(f)
    if ok.sum() >= 2 and np.ptp(p[ok]) > 0:
        k, c = np.polyfit(p[ok], f[ok], 1)
        xx = np.linspace(p[ok].min(), p[ok].max(), 2)
        ax.plot(xx, k * xx + c, color="black", lw=0.8, ls="--", label="least squares (all)")
        data["fit"] = [float(k), float(c)]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    title = "Proxy vs full task"
    rho_all = (summary or {}).get("all", {}).get("spearman")
    if rho_all is not None:
        title += f"\nall {len(p)} cells: ρ={rho_all['estimate']:.2f} [{rho_all['low']:.2f}, {rho_all['high']:.2f}]"
    ax.set_title(title)
    data["title"] = title
    ax.grid(alpha=0.3)
    # below the axes, so that no point hides behind it
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize=7)
    data["files"] = [str(p) for p in save(fig, out)]
    return data


ROLE_COLOURS = {"aspp": "#9467bd", "top1": "#8c564b", "top": "#d62728", "stratified": "#1f77b4", "random": "#17becf"}


def plot_fullstudy(cells: Sequence[Mapping[str, Any]], res: Mapping[str, Any], out: str | Path) -> dict[str, Any]:
    """The proxy-vs-full study in one figure: per cell, the proxy's mean val mIOU against the full
    task's mean test mIOU (bars: the seeds' range), coloured by role; beside it each predictor's
    Spearman rho with the full task (bootstrap 95% interval) under the full task's seed-vs-seed ceiling,
    beside the paper's rho."""
    from .stats import PAPER_SPEARMAN

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.4), gridspec_kw={"width_ratios": [1.3, 1], "wspace": 0.5})
    data: dict[str, Any] = {"roles": {}}
    for i, role in enumerate(dict.fromkeys(str(c["role"]) for c in cells)):
        mine = [c for c in cells if str(c["role"]) == role]
        px = np.array([np.mean(list(c["proxy"].values())) for c in mine])
        fy = np.array([np.mean(list(c["full"].values())) for c in mine])
        xerr = np.array([[px[j] - min(c["proxy"].values()), max(c["proxy"].values()) - px[j]] for j, c in enumerate(mine)]).T
        yerr = np.array([[fy[j] - min(c["full"].values()), max(c["full"].values()) - fy[j]] for j, c in enumerate(mine)]).T
        col = ROLE_COLOURS.get(role, plt.get_cmap("tab10")(i % 10))
        ax.errorbar(px, fy, xerr=xerr, yerr=yerr, fmt="o", ms=5, color=col, ecolor=col, elinewidth=0.7, alpha=0.85,
                    label=f"{role} (n={len(mine)})", mec="white", mew=0.5)
        data["roles"][role] = {"proxy": px.tolist(), "full": fy.tolist()}
    sp = res.get("correlation", {}).get("spearman")
    title = f"{res.get('cells', len(cells))} cells"
    if sp:
        title += f": Spearman ρ={sp['estimate']:.2f} [{sp['low']:.2f}, {sp['high']:.2f}]"
    ax.set_title(title)
    ax.set_xlabel("proxy: mean val mIOU over seeds")
    ax.set_ylabel("full task: mean test mIOU over seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize=7, ncol=3)
    names, est, lo, hi = [], [], [], []
    for name, key in (("proxy", None), ("params", "params_spearman"), ("FLOPs", "flops_spearman"),
                      ("synflow", "synflow_spearman"), ("NASWOT", "naswot_spearman")):
        c = sp if key is None else res.get(key)
        if c and c.get("estimate") is not None and math.isfinite(c["estimate"]):
            names.append(name)
            est.append(c["estimate"])
            lo.append(c["estimate"] - c["low"] if math.isfinite(c.get("low", math.nan)) else 0.0)
            hi.append(c["high"] - c["estimate"] if math.isfinite(c.get("high", math.nan)) else 0.0)
    y = np.arange(len(names))
    bx.barh(y, est, xerr=[lo, hi], color=["#d62728"] + ["#7f7f7f"] * (len(names) - 1), alpha=0.8, capsize=3)
    bx.set_yticks(y, [f"{n} {e:+.2f}" for n, e in zip(names, est)])
    bx.invert_yaxis()
    bx.axvline(0, color="black", lw=0.8)
    ceiling = res.get("seed_spearman", {}).get("full")
    if ceiling is not None and math.isfinite(ceiling):
        bx.axvline(ceiling, color="#2ca02c", ls="--", lw=1.2, label=f"full task seed vs seed ({ceiling:.2f})")
    bx.axvline(PAPER_SPEARMAN, color="#1f77b4", ls=":", lw=1.2, label=f"paper, proxy vs full on its top 50 ({PAPER_SPEARMAN:.2f})")
    bx.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize=7)
    bx.set_xlim(-1, 1)
    bx.set_xlabel("Spearman ρ with the full task (95% bootstrap)")
    bx.set_title("Predictors of the full task")
    bx.grid(alpha=0.3, axis="x")
    data["predictors"] = dict(zip(names, est))
    data["files"] = [str(p) for p in save(fig, out)]
    return data
