"""Every figure, drawn from a small real study; the plotted data is checked, and the files exist."""
from __future__ import annotations

import matplotlib.image
import numpy as np
import optuna
import pytest
from analysis_fixtures import make_study

from analysis import plots
from analysis.cell_graph import draw_cell, layout
from analysis.curves import final_values, runs_from_records
from analysis.load import best_complete, load_all
from dpc.genome import Genome
from dpc.zoo import zoo_cell

REFS = [
    plots.Reference("aspp", 0.55, n_params=123_000, flops=4_000_000, genome=str(zoo_cell("aspp"))),
    plots.Reference("top1_cityscapes", 0.62, genome=str(zoo_cell("top1_cityscapes"))),
]


@pytest.fixture(scope="module")
def study_records():
    st = optuna.storages.InMemoryStorage()
    for strategy, bias in (("random", 0.0), ("tpe", 0.05)):
        for seed in range(3):
            make_study(st, f"x-{strategy}-seed{seed}", strategy, seed, 8, bias=bias, fail_every=5, seconds=1.0 + seed)
    return load_all(st)


def assert_png(path, min_bytes=8_000):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > min_bytes
    img = matplotlib.image.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 200
    assert img[..., :3].std() > 0.05  # not a blank canvas
    svg = path.with_suffix(".svg")
    assert svg.is_file() and b"<svg" in svg.read_bytes()[:1000]


def files(data):
    from pathlib import Path

    return [Path(p) for p in data["files"]]


def test_best_so_far_vs_evaluations(study_records, tmp_path):
    _, recs = study_records
    runs = runs_from_records(recs)
    data = plots.plot_best_so_far(runs, tmp_path / "bsf", references=REFS)
    assert set(data["strategies"]) == {"random", "tpe"}
    for strategy, band in data["strategies"].items():
        assert band["x"] == list(range(1, 9))
        med = np.array(band["median"])
        assert np.all(np.diff(med) >= 0)  # best so far never decreases
        curves = np.vstack([r.curve for r in runs[strategy].values()])
        np.testing.assert_allclose(med, np.median(curves, axis=0))
        assert np.all(np.array(band["q25"]) <= med) and np.all(med <= np.array(band["q75"]))
    assert data["references"] == [{"name": "aspp", "value": 0.55}, {"name": "top1_cityscapes", "value": 0.62}]
    assert [p.suffix for p in files(data)] == [".png", ".svg"]
    assert_png(files(data)[0])


def test_best_so_far_vs_time(study_records, tmp_path):
    _, recs = study_records
    data = plots.plot_best_so_far(runs_from_records(recs), tmp_path / "bsf_time", x="seconds")
    band = data["strategies"]["tpe"]
    assert band["x"][0] == 0 and band["x"][-1] == pytest.approx(8 * 3.0)  # slowest seed: 8 x 3 s
    med = np.array(band["median"])
    assert np.isnan(med[0]) and np.all(np.diff(med[np.isfinite(med)]) >= 0)
    assert_png(files(data)[0])


def test_final_best_distribution(study_records, tmp_path):
    _, recs = study_records
    final = final_values(runs_from_records(recs))
    data = plots.plot_final_best(final, tmp_path / "final", references=REFS)
    assert data["strategies"]["tpe"] == list(final["tpe"].values())
    for s in ("random", "tpe"):
        assert data["strategies"][s] == [max(r.value for r in recs if r.strategy == s and r.seed == seed and r.complete)
                                         for seed in range(3)]
    assert_png(files(data)[0])


def test_pareto_front_hand_example():
    costs = [1, 2, 2, 3, 4, 5, np.nan]
    values = [0.1, 0.3, 0.2, 0.3, 0.5, 0.4, 0.9]
    # (1,.1) front; (2,.3) front; (2,.2) dominated; (3,.3) dominated by (2,.3); (4,.5) front; (5,.4) dominated
    assert plots.pareto_front(costs, values) == [0, 1, 4]
    assert plots.pareto_front([], []) == []


@pytest.mark.parametrize("cost", ["flops", "params"])
def test_cost_vs_miou_with_front(study_records, tmp_path, cost):
    _, recs = study_records
    done = [r for r in recs if r.complete]
    data = plots.plot_cost_vs_miou(recs, tmp_path / f"pareto_{cost}", cost=cost, references=REFS)
    assert data["measured"] and len(data["x"]) == len(done)
    assert data["x"] == [float(r.flops if cost == "flops" else r.n_params) for r in done]
    assert data["front"] == plots.pareto_front(data["x"], data["y"])
    xs, ys = np.array(data["x"]), np.array(data["y"])
    for i in data["front"]:  # nothing dominates a front point
        assert not np.any((xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i])))
    assert data["y"][data["front"][-1]] == max(data["y"])
    aspp = data["references"][0]
    assert aspp["name"] == "aspp" and aspp["cost"] == (4_000_000 if cost == "flops" else 123_000)
    assert_png(files(data)[0])


def test_cost_falls_back_to_analytic(tmp_path):
    st = optuna.storages.InMemoryStorage()
    make_study(st, "s-random-seed0", "random", 0, 4, measured=False)
    _, recs = load_all(st)
    data = plots.plot_cost_vs_miou(recs, tmp_path / "p", references=REFS)
    assert not data["measured"]
    assert data["x"][0] == plots.analytic_cost(recs[0].genome)[1]
    assert data["references"][1]["cost"] == plots.analytic_cost(str(zoo_cell("top1_cityscapes")))[1]


def test_choice_frequency(study_records, tmp_path):
    _, recs = study_records
    top = [Genome.parse(r.genome) for r in best_complete(recs, 6)]
    data = plots.plot_choice_frequency(top, tmp_path / "choices")
    assert data["n_cells"] == 6
    assert sum(data["ops"].values()) == 30 and sum(data["families"].values()) == 30
    want = {}
    for g in top:
        for br in g.branches:
            want[br.op.name] = want.get(br.op.name, 0) + 1
    assert {k: v for k, v in data["ops"].items() if v} == want
    assert np.sum(data["rates"]) == data["families"]["sep3x3"] and np.sum(data["grids"]) == data["families"]["pool"]
    inputs = np.array(data["inputs"])
    assert inputs.shape == (5, 5) and inputs[0, 0] == 6 and np.all(inputs.sum(axis=1) == 6)
    assert np.all(inputs[np.triu_indices(5, 1)] == 0)  # branch b reads only F or 0..b-1
    assert_png(files(data)[0])


def test_correlation_scatter(tmp_path):
    p = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    f = [0.2, 0.1, 0.4, 0.3, 0.6, 0.5]
    g = ["top", "top", "top", "random", "random", "random"]
    data = plots.plot_correlation(p, f, g, tmp_path / "corr",
                                  summary={"top": {"spearman": {"estimate": 0.5, "low": -1.0, "high": 1.0}},
                                           "all": {"spearman": {"estimate": 0.25, "low": -0.5, "high": 0.75}}})
    assert data["groups"]["top"] == {"proxy": [0.1, 0.2, 0.3], "full": [0.2, 0.1, 0.4]}
    assert "all" not in data["groups"]  # the overall rho goes in the title, not as a group
    assert data["title"].endswith(f"all {len(p)} cells: ρ=0.25 [-0.50, 0.75]")
    assert data["fit"] == pytest.approx(list(np.polyfit(p, f, 1)))
    assert_png(files(data)[0], min_bytes=5_000)


def test_cell_graph_layout_and_drawing(tmp_path):
    g = zoo_cell("top1_cityscapes")  # F -> b0 -> {b1 -> b2, b3, b4}
    d = layout(g)
    assert d.positions["F"][0] == 0 and d.positions["concat"][0] == 4
    assert [d.positions[f"b{i}"][0] for i in range(5)] == [1, 2, 3, 2, 2]  # depth in the tree
    assert d.edges[:5] == [("F", "b0"), ("b0", "b1"), ("b1", "b2"), ("b0", "b3"), ("b0", "b4")]
    assert d.edges[5:] == [(f"b{i}", "concat") for i in range(5)]
    assert d.labels["b1"] == "b1: sep 3x3\nrate 18x15"
    assert len({d.positions[f"b{i}"][1] for i in range(5)}) == 5  # one row per branch
    drawn = draw_cell(g, tmp_path / "cell", title="top1")
    assert drawn.positions == d.positions and [p.suffix for p in drawn.files] == [".png", ".svg"]
    assert_png(drawn.files[0])
    aspp = layout(zoo_cell("aspp"))
    assert all(aspp.positions[f"b{i}"][0] == 1 for i in range(5)) and aspp.labels["b4"] == "b4: pool\ngrid 1x1"
