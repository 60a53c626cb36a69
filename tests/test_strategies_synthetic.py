"""The synthetic objectives: known optimum (checked by brute force), structure, determinism."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dpc.genome import Branch, Genome
from dpc.mutation import sample_genome
from dpc.ops import OPS
from strategies.objectives import ObjectiveError, resolve_objective
from strategies.synthetic import FailingObjective, SlowObjective, StructuredObjective, SyntheticFailure, make_synthetic


@pytest.mark.parametrize("seed", [0, 1])
def test_known_optimum_is_the_true_maximum_by_brute_force(seed):
    f = StructuredObjective(seed=seed, branches=2)
    best, genome = f.known_optimum()
    assert best == 1.0 and f(genome) == pytest.approx(1.0)
    scores = [
        f(Genome((Branch(-1, a), Branch(i, b))))
        for a, b in itertools.product(OPS, OPS)
        for i in (-1, 0)
    ]
    assert max(scores) == pytest.approx(1.0) and min(scores) >= 0.0


def test_five_branch_optimum_and_range():
    f = StructuredObjective(seed=0)
    best, genome = f.known_optimum()
    assert f(genome) == pytest.approx(best) == 1.0
    rng = np.random.default_rng(0)
    values = [f(sample_genome(rng)) for _ in range(2000)]
    assert 0.0 <= min(values) and max(values) < 0.8  # uniform sampling rarely gets close
    # Local structure: the best single mutation of the optimum is still good (smooth-ish).
    from dpc.mutation import neighbours

    assert max(f(n) for n in neighbours(genome)) > 0.9


def test_equivalent_cells_score_the_same_and_noise_is_per_cell():
    f = StructuredObjective(seed=2, noise=0.05)
    g = Genome.parse("F:sep3x3_6x6 0:sep3x3_12x9 F:pool_2x2 1:conv1x1 0:sep3x3_1x1")
    assert f(g) == f(g.canonical()) == f(g)
    assert f(g) != StructuredObjective(seed=2)(g)


def test_spec_strings():
    assert isinstance(make_synthetic(""), StructuredObjective)
    slow = make_synthetic("slow,sleep=0.01,seed=3")
    assert isinstance(slow, SlowObjective) and slow.sleep == 0.01 and slow.seed == 3
    with pytest.raises(ValueError, match="unknown synthetic"):
        make_synthetic("needle")
    with pytest.raises(ValueError, match="bad option 'sleep=1'"):
        make_synthetic("structured,sleep=1")
    with pytest.raises(ValueError, match="bad value"):
        make_synthetic("slow,sleep=abc")
    obj = resolve_objective("synthetic")
    assert obj.spec == "synthetic:structured" and obj.metric == "score" and obj.config is None
    with pytest.raises(ObjectiveError):
        resolve_objective("synthetic:nope")


def test_failing_objective_is_deterministic_per_cell():
    f = FailingObjective(fail_rate=0.3, nan_rate=0.2)
    rng = np.random.default_rng(1)
    outcomes = []
    for _ in range(300):
        g = sample_genome(rng)
        try:
            v = f(g)
            outcomes.append("nan" if math.isnan(v) else "ok")
        except SyntheticFailure as e:
            assert "synthetic failure" in e.reason
            outcomes.append("fail")
            with pytest.raises(SyntheticFailure):
                f(g.canonical())
    counts = {k: outcomes.count(k) for k in ("ok", "nan", "fail")}
    assert 50 < counts["fail"] < 130 and 25 < counts["nan"] < 100 and counts["ok"] > 100
