"""Zero-cost predictors (benchmarks.zero_cost): synflow, naswot and the bench table, at tiny shapes."""
from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import zero_cost
from benchmarks.zero_cost import markdown, naswot, score_records, synflow
from dpc.genome import Genome
from proxy.config import get_config

CFG = get_config("test")
IN, HW = 8, (9, 9)
SEPS = "F:sep3x3_6x6 F:sep3x3_1x1 F:sep3x3_12x12 F:sep3x3_18x18 F:sep3x3_3x3"
ONES = "F:conv1x1 F:conv1x1 F:conv1x1 F:conv1x1 F:conv1x1"
MIXED = "F:conv1x1 0:sep3x3_6x6 F:pool_1x1"


def test_synflow_positive_finite_deterministic_and_cell_dependent():
    a = synflow(SEPS, CFG, IN, HW)
    assert a > 0 and math.isfinite(a)
    assert synflow(Genome.parse(SEPS), CFG, IN, HW) == a
    b = synflow(ONES, CFG, IN, HW)
    assert b > 0 and math.isfinite(b)
    assert b != a
    assert synflow(MIXED, CFG, IN, HW) not in (a, b)


def test_synflow_grows_with_width_and_branches():
    # SynFlow sums |theta dR/dtheta|, i.e. about R per layer for a positive linear network: it grows
    # with the width and the number of parallel branches, but not with parameter count as such
    # (here five 1x1 convs score above five separable convs, which have more parameters).
    wide = CFG.replace(channels=2 * CFG.channels, concat_channels=2 * CFG.concat_channels)
    assert synflow(ONES, wide, IN, HW) > synflow(ONES, CFG, IN, HW)
    one = synflow("F:conv1x1", CFG, IN, HW)
    two = synflow("F:conv1x1 F:conv1x1", CFG, IN, HW)
    assert one < two < synflow(ONES, CFG, IN, HW)


def test_naswot_finite_and_prefers_distinct_inputs():
    x = torch.randn(8, IN, *HW, generator=torch.Generator().manual_seed(0))
    distinct = naswot(MIXED, CFG, x)
    assert math.isfinite(distinct)
    assert naswot(MIXED, CFG, x) == distinct
    same = naswot(MIXED, CFG, x[:1].expand(8, -1, -1, -1).contiguous())
    assert distinct > same  # identical codes: K has rank 1, log|det K| = -inf
    with pytest.raises(ValueError):
        naswot(MIXED, CFG, x[:1])


CELLS = [
    ("F:conv1x1", 0.10, 0.12),
    ("F:conv1x1 F:conv1x1", 0.15, 0.14),
    ("F:conv1x1 0:sep3x3_6x6 F:pool_1x1", 0.20, 0.21),
    ("F:sep3x3_1x1 F:sep3x3_6x6", 0.25, 0.22),
    (ONES, 0.30, 0.31),
    (SEPS, 0.35, 0.33),
]


def fake_records() -> list[dict]:
    out = []
    for genome, val, test in CELLS:
        g = Genome.parse(genome)
        out.append({"genome": genome, "canonical_hash": g.canonical_hash(), "seed": 0, "val_miou": val,
                    "test_miou": test, "error": None, "config": "test", "date": "2026-01-01"})
    # a failed evaluation is skipped; a second seed is averaged into its cell
    out.append({**out[0], "seed": 1, "val_miou": None, "error": "NaN loss"})
    out.append({**out[1], "seed": 1, "val_miou": 0.17, "test_miou": 0.16})
    return out


def test_score_records_spearman_in_range():
    rows = score_records(fake_records(), "test", in_channels=IN, hw=HW, batch=8)
    assert [r["predictor"] for r in rows] == list(zero_cost.PREDICTORS)
    for r in rows:
        assert r["cells"] == len(CELLS)
        assert -1 <= r["spearman_val"] <= 1, r
        assert -1 <= r["spearman_test"] <= 1, r
        assert r["ms_per_cell"] >= 0
    # params is analytic: its rho must be scipy's on the per-cell means (cell 1 averages seeds 0 and 1, the
    # failed seed of cell 0 is dropped)
    from scipy import stats

    from dpc.cost import cell_cost

    counts = [cell_cost(Genome.parse(g), IN, *HW, CFG.channels, CFG.concat_channels).params for g, _, _ in CELLS]
    vals = [v for _, v, _ in CELLS]
    vals[1] = (0.15 + 0.17) / 2
    params = next(r for r in rows if r["predictor"] == "params")
    assert params["spearman_val"] == pytest.approx(stats.spearmanr(counts, vals).statistic)
    table = markdown(rows)
    assert table.count("\n") == 1 + len(rows) and "n/a" not in table


def test_score_records_na_below_five_cells():
    rows = score_records(fake_records()[:4], "test", in_channels=IN, hw=HW, batch=4)
    assert all(r["cells"] == 4 and math.isnan(r["spearman_val"]) for r in rows)
    assert "n/a" in markdown(rows)


def test_cli_prints_table(tmp_path, capsys):
    d = tmp_path / "test-abc-def"
    d.mkdir()
    (d / "host-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in fake_records()))
    assert zero_cost.main(["--data", str(tmp_path), "--config", "test", "--in-channels", str(IN), "--hw", "9", "9",
                           "--features", "random"]) == 0
    out = capsys.readouterr().out
    assert "test-abc-def" in out
    assert "| predictor | Spearman vs val | Spearman vs test | ms per cell | cells |" in out
    for name in zero_cost.PREDICTORS:
        assert f"| {name} | " in out
    assert zero_cost.main(["--data", str(tmp_path / "missing")]) == 1


def test_naswot_reads_the_cached_train_features_of_the_records_scene_set(tmp_path, capsys, cache_dir):
    from proxy.config import get_config
    from proxy.scenes import SCENE_PRESETS, scene_key

    cfg = get_config("test")
    key = scene_key(SCENE_PRESETS["test"])
    feats = zero_cost.train_features(cfg, 3, seed=1, scene_key=key, cache_dir=cache_dir)
    again = zero_cost.train_features(cfg, 3, seed=1, cache_dir=cache_dir)
    other = zero_cost.train_features(cfg, 3, seed=2, cache_dir=cache_dir)
    assert feats.dtype == torch.float32 and feats.shape[0] == 3 and torch.equal(feats, again)
    assert not torch.equal(feats, other)  # another seed, other images
    with pytest.raises(ValueError, match="scene set is 0123456789ab"):
        zero_cost.train_features(cfg, 3, scene_key="0123456789ab", cache_dir=cache_dir)
    d = tmp_path / "test-abc-def"
    d.mkdir()
    recs = [dict(r, scene_key="0123456789ab") for r in fake_records()]
    (d / "host-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert zero_cost.main(["--data", str(tmp_path), "--config", "test", "--cache-dir", cache_dir]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0123456789ab" in err[0]
    recs = [dict(r, scene_key=key) for r in fake_records()]
    (d / "host-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert zero_cost.main(["--data", str(tmp_path), "--config", "test", "--cache-dir", cache_dir, "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "(naswot on 4 cached train images)" in out and "| naswot | " in out
