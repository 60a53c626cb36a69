"""The fidelity ladder (benchmarks.ladder): early steps rank cells worse than late ones, the last is the final."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import ladder
from tests.test_surrogate import make_records


def records_with_noisy_curves():
    rng = np.random.default_rng(0)
    recs = make_records(n_uniform=60, n_neighbour=10)
    for r in recs:  # val at step s: the final value plus noise that shrinks as training goes on
        final = r["val_miou"]
        r["curve"] = [[s, final + rng.normal(0, 0.3 / s * 100)] for s in (100, 200, 400)] + [[600, final]]
    return recs


def test_ladder_rises_to_one_and_uses_one_record_per_cell(tmp_path, capsys):
    recs = records_with_noisy_curves()
    rows = ladder.ladder(recs)
    assert [r["step"] for r in rows] == [100, 200, 400, 600]
    rho = [r["spearman_val"] for r in rows]
    assert rho[0] < rho[1] < rho[2] < rho[3] == pytest.approx(1.0)
    assert rows[0]["cells"] == len({r["canonical_hash"] for r in recs})
    assert -1 <= rows[0]["spearman_test_low"] <= rows[0]["spearman_test"] <= rows[0]["spearman_test_high"] <= 1
    # an imported record (its curve only the final point) is no learning curve: not in the ladder
    imported = [dict(r, canonical_hash=f"imported{i}", seed=0, curve=[[600, r["val_miou"]]]) for i, r in enumerate(recs[:5])]
    assert [row["cells"] for row in ladder.ladder(recs + imported)] == [row["cells"] for row in rows]
    d = tmp_path / "cpu-x-y"
    d.mkdir()
    (d / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert ladder.main(["--data", str(tmp_path), "--out", str(tmp_path / "fig" / "ladder")]) == 0
    out = capsys.readouterr().out
    assert "| 600 | 100% |" in out and "seed-to-seed spearman (ceiling):" in out
    assert (tmp_path / "fig" / "ladder.png").stat().st_size > 1000


def test_too_few_cells_is_a_one_line_error(tmp_path, capsys):
    d = tmp_path / "cpu-x-y"
    d.mkdir()
    (d / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records_with_noisy_curves()[:3]))
    with pytest.raises(SystemExit):
        ladder.main(["--data", str(d)])
    assert "fewer than 5 cells with learning curves" in capsys.readouterr().err
