"""analysis.fullstudy on synthetic records: a proxy that tracks the full task, one that does not,
the noise ceilings, and the contract lines."""
from __future__ import annotations

import json

import numpy as np
import pytest

from analysis import fullstudy
from dpc.mutation import sample_genome


def make(tmp_path, related=True, n=16, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        g = sample_genome(rng)
        q = 0.2 + 0.1 * i / n
        role = "aspp" if i == 3 else "top1" if i == 5 else "stratified"
        full_q = 0.5 + 2 * q if related else 0.5 + 0.2 * rng.random()
        for s in range(3):
            lines.append(dict(genome=str(g), canonical_hash=g.canonical_hash(), task="proxy", seed=s, role=role,
                              val_miou=q + rng.normal(0, 0.008), test_miou=q, params=1000 + i, flops=10**6 + i))
        for s in range(2):
            lines.append(dict(genome=str(g), canonical_hash=g.canonical_hash(), task="full", seed=s, role=role,
                              val_miou=full_q, test_miou=full_q + rng.normal(0, 0.002), device="cuda:0",
                              train_seconds=1800.0 if i else None, eval_seconds=0.0))
        lines.append(dict(genome=str(g), canonical_hash=g.canonical_hash(), task="zero_cost", seed=0, role=role,
                          synflow=float(i), naswot=None if i == 0 else float(-i)))  # a -inf NASWOT is stored as null
    d = tmp_path / "records"
    d.mkdir(exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in lines)
    (d / "a.jsonl").write_text(text + text.splitlines()[0] + "\n" + '{"cut": ')  # a duplicate and a cut line
    return d


def test_a_faithful_proxy_correlates_and_the_contract_lines_are_printed(tmp_path, capsys):
    d = make(tmp_path)
    assert fullstudy.main(["--data", str(d), "--n-resamples", "300", "--json", str(tmp_path / "r.json"),
                           "--figure", str(tmp_path / "fig"), "--markdown", str(tmp_path / "t.md")]) == 0
    assert (tmp_path / "fig.png").stat().st_size > 10_000 and (tmp_path / "fig.svg").exists()
    out = capsys.readouterr().out.splitlines()
    res = json.loads((tmp_path / "r.json").read_text())
    assert out[-3] == "cells: 16"
    assert res["cost_hours"]["full on cuda:0"] == {"evaluations": 32, "hours": 15.0, "timed": 30}
    assert "cost: full on cuda:0: 32 evaluations, 15.0 h (30 timed)" in out
    rho = res["correlation"]["spearman"]
    assert 0.7 < rho["estimate"] < 1 and out[-2] == f"spearman: {rho['estimate']:.2f} [{rho['low']:.2f}, {rho['high']:.2f}]"
    assert res["synflow_spearman"]["estimate"] > 0.9 and res["naswot_spearman"]["estimate"] < -0.9
    assert res["synflow_spearman"]["n"] == 16 and res["naswot_spearman"]["n"] == 15
    assert any(line.startswith("naswot vs full: spearman -") for line in out)
    assert res["seed_spearman"]["proxy"] > 0.8 and res["spearman_corrected"] >= res["correlation"]["spearman"]["estimate"]
    bv = res["best_vs_aspp"]
    assert bv["genome"] == fullstudy.cells_of(fullstudy.read(d))[int(np.argmax(
        [np.mean(list(c["proxy"].values())) if c["role"] not in ("aspp", "top1") else -1
         for c in fullstudy.cells_of(fullstudy.read(d))]))]["genome"]
    assert bv["difference"] == pytest.approx(np.mean(bv["best_full_test"]) - np.mean(bv["aspp_full_test"]))
    assert out[-1].startswith("best searched vs aspp (full task, test): +") and "p=" in out[-1]
    md = (tmp_path / "t.md").read_text().splitlines()
    assert md[2] == f"| proxy (mean val mIOU) | {rho['estimate']:+.2f} [{rho['low']:+.2f}, {rho['high']:+.2f}] | 16 |"
    assert md[6] == "| NASWOT | " + "{estimate:+.2f} [{low:+.2f}, {high:+.2f}] | 15 |".format(**res["naswot_spearman"])
    cells = [line for line in md if line.startswith("| ") and "`" in line]
    full = [float(line.split(" | ")[3].split()[0]) for line in cells]
    assert len(cells) == 16 and full == sorted(full, reverse=True) and all(line.endswith("(2) |") for line in cells)


def test_an_unrelated_full_task_gives_an_interval_around_zero(tmp_path):
    res = fullstudy.analyse(fullstudy.read(make(tmp_path, related=False)), n_resamples=300)
    sp = res["correlation"]["spearman"]
    assert sp["low"] < 0 < sp["high"] and abs(sp["estimate"]) < 0.6


def test_too_few_cells_and_a_missing_folder(tmp_path, capsys):
    assert fullstudy.main(["--data", str(make(tmp_path, n=2))]) == 0
    assert capsys.readouterr().out.splitlines()[-3:] == ["cells: 2", "spearman: n/a [n/a, n/a]",
                                                          "best searched vs aspp (full task, test): n/a p=n/a"]
    with pytest.raises(SystemExit):
        fullstudy.main(["--data", str(tmp_path / "nope")])


def test_records_of_two_configs_or_scene_sets_are_refused(tmp_path, capsys):
    d = make(tmp_path, n=4)
    recs = fullstudy.read(d)
    assert fullstudy.mixed(recs) is None
    for field, value, task in (("config_hash", "aaa", "full"), ("scene_key", "kkk", "proxy")):
        other = tmp_path / field
        other.mkdir()
        rows = [dict(r, **{field: value}) for r in recs] + [dict(r, seed=9, **{field: value + "x"}) for r in recs if r["task"] == task][:1]
        (other / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        with pytest.raises(SystemExit):
            fullstudy.main(["--data", str(other)])
        err = capsys.readouterr().err
        assert f"{value}, {value}x" in err and ("config hashes" if field == "config_hash" else "scene sets") in err


def test_the_figure_plots_every_cell_and_each_predictor_rho(tmp_path):
    from analysis.plots import plot_fullstudy

    recs = fullstudy.read(make(tmp_path))
    res = fullstudy.analyse(recs, n_resamples=200)
    data = plot_fullstudy(fullstudy.cells_of(recs), res, tmp_path / "study")
    assert sum(len(v["proxy"]) for v in data["roles"].values()) == 16 and set(data["roles"]) == {"aspp", "top1", "stratified"}
    assert data["predictors"]["proxy"] == res["correlation"]["spearman"]["estimate"]
    assert data["predictors"]["NASWOT"] == res["naswot_spearman"]["estimate"]
    assert [p.endswith((".png", ".svg")) for p in data["files"]] == [True, True]


def test_versus_correlates_two_full_tasks_on_their_shared_cells(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    a = make(tmp_path / "a", n=8)
    recs = fullstudy.read(a)
    other = tmp_path / "other"
    other.mkdir()
    # the other full task: the same cells but the last two, in reverse order of quality
    rows = [dict(r, test_miou=-r["test_miou"]) for r in recs if r["task"] == "full"]
    kept = sorted({r["canonical_hash"] for r in rows})[:-2]
    (other / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["canonical_hash"] in kept))
    vs = fullstudy.versus(recs, fullstudy.read(other), n_resamples=200)
    assert vs["shared_cells"] == 6 and vs["correlation"]["spearman"]["estimate"] == pytest.approx(-1)
    assert fullstudy.main(["--data", str(a), "--versus", str(other), "--n-resamples", "200"]) == 0
    assert "on 6 shared cells: spearman -1.00" in capsys.readouterr().out
