"""The DPC-Bench surrogate (benchmarks.surrogate) on a synthetic fixture of records: a known quality
(strategies.synthetic.StructuredObjective, noiseless) plus N(0, SIGMA) per seed, two sources
(uniform, neighbour) and a small zoo source, some cells with 2-3 seeds."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import bench
from benchmarks import surrogate as S
from dpc.genome import Branch, Genome
from dpc.mutation import mutate, sample_genome
from strategies.synthetic import StructuredObjective

SIGMA = 0.02


def make_records(n_uniform=240, n_neighbour=40, n_zoo=3, seed=0, shuffle=False):
    obj = StructuredObjective(seed=0)
    rng = np.random.default_rng(seed)
    records = []
    genomes = []

    def add(g, source, seeds):
        q = obj.raw(g) / obj._optimum[0]
        for s in seeds:
            records.append(dict(genome=str(g), canonical_hash=g.canonical_hash(), seed=s,
                                source=source if s == 0 else "reseed", val_miou=q + rng.normal(0, SIGMA),
                                test_miou=q + rng.normal(0, SIGMA), train_seconds=float(np.exp(rng.normal(5, 0.1))),
                                error=None, date=f"2026-01-01T00:00:{len(records):06d}"))

    for _ in range(n_zoo):
        g = sample_genome(rng)
        genomes.append(g)
        add(g, "zoo", (0,))
    for i in range(n_uniform):
        g = sample_genome(rng)
        genomes.append(g)
        add(g, "uniform", (0, 1) if i < 50 else (0,))
    for i in range(n_neighbour):
        g = mutate(genomes[int(rng.integers(len(genomes)))], rng)
        add(g, "neighbour", (0, 1, 2) if i < 15 else (0,))
    if shuffle:  # the target permuted across cells (the same permutation for every seed of a cell)
        hashes = sorted({r["canonical_hash"] for r in records})
        perm = dict(zip(hashes, rng.permutation(len(hashes))))
        base = {}
        for r in records:
            base.setdefault(r["canonical_hash"], r["val_miou"])
        by_index = {i: base[h] for i, h in enumerate(hashes)}
        for r in records:
            r["val_miou"] = by_index[perm[r["canonical_hash"]]] + rng.normal(0, SIGMA)
    return records


@pytest.fixture(scope="module")
def records():
    return make_records()


def test_features_fixed_length_distinct_and_canonical():
    rng = np.random.default_rng(1)
    gs = [sample_genome(rng) for _ in range(20)]
    xs = [S.features(g) for g in gs]
    assert all(x.shape == (S.N_FEATURES,) for x in xs) and len(S.FEATURE_NAMES) == S.N_FEATURES
    assert all(np.isfinite(x).all() for x in xs)
    distinct = {g.canonical_hash() for g in gs}
    assert len({x.tobytes() for x in xs}) == len(distinct)
    # equivalent cells (branches 1 and 2 both read F: swapped order) give equal vectors; a changed op does not
    a = Genome.of((-1, "conv1x1"), (-1, "sep3x3_6x6"), (-1, "pool_2x4"), (1, "sep3x3_1x3"), (0, "conv1x1"))
    b = Genome.of((-1, "pool_2x4"), (-1, "sep3x3_6x6"), (1, "sep3x3_1x3"), (-1, "conv1x1"), (3, "conv1x1"))
    assert a.canonical_hash() == b.canonical_hash() and str(a) != str(b)
    assert np.array_equal(S.features(a), S.features(b))
    c = Genome.of((-1, "conv1x1"), (-1, "sep3x3_6x9"), (-1, "pool_2x4"), (1, "sep3x3_1x3"), (0, "conv1x1"))
    assert not np.array_equal(S.features(a), S.features(c))
    assert np.array_equal(S.features(str(a)), S.features(a))
    with pytest.raises(ValueError):
        S.features(Genome(tuple(Branch(-1, a.branches[0].op) for _ in range(6))))


def test_fit_sigma_and_sampling(records):
    s = S.fit(records)
    assert set(s.models) == set(S.TARGETS)
    assert abs(s.sigma["val_miou"] - SIGMA) < 0.25 * SIGMA
    assert abs(s.sigma["log_train_seconds"] - 0.1) < 0.03
    g = Genome.parse(records[10]["genome"])
    mean = s.predict(g)
    assert mean == s.predict(g) and 0.0 < mean < 1.5
    draws = np.array([s.sample(g, np.random.default_rng(i)) for i in range(100)])
    assert abs(draws.mean() - mean) < 0.01 and abs(draws.std() - s.sigma["val_miou"]) < 0.005
    assert s.predict(g, rng=np.random.default_rng(0)) == s.sample(g, np.random.default_rng(0))


def test_validate_keys_heldout_and_loso(records):
    r = S.validate(records)
    assert set(r) >= {"cells", "model", "sigma", "kfold", "loso", "loso_skipped", "seed_ceiling", "seed_surrogate"}
    for sc in [r["kfold"], r["seed_ceiling"], r["seed_surrogate"], *r["loso"].values()]:
        assert set(sc) == {"n", "spearman", "kendall", "r2"}
    assert r["cells"] == 283
    assert r["kfold"]["spearman"] > 0.5, r["kfold"]
    assert r["kfold"]["kendall"] > 0.3
    assert set(r["loso"]) == {"uniform", "neighbour"} and r["loso_skipped"] == {"zoo": 3}
    assert r["loso"]["neighbour"]["n"] == 40 and r["loso"]["uniform"]["n"] == 240
    assert r["seed_ceiling"]["n"] == 65 and r["seed_ceiling"]["spearman"] > 0.8
    assert r["seed_surrogate"]["n"] == 65 and r["seed_surrogate"]["spearman"] > 0.3
    text = S.table([r])
    assert "K-fold by cell" in text and "leave out neighbour" in text and "zoo (3)" in text


def test_shuffled_target_is_near_zero():
    r = S.heldout_spearman(make_records(shuffle=True, seed=3))
    assert abs(r) < 0.2, r


def test_bench_info_prints_surrogate(tmp_path, capsys):
    big, small = tmp_path / "cpu-aaa-bbb", tmp_path / "cpu-ccc-ddd"
    recs = make_records(n_uniform=110, n_neighbour=0, n_zoo=0)
    for d, rs in ((big, recs), (small, recs[:95])):
        d.mkdir()
        (d / "h-1-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    assert bench.main(["info", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    blocks = {b.split()[0]: b for b in out.strip().split("\n\n")}
    line = [x for x in blocks[big.name].splitlines() if x.startswith("surrogate spearman")][0]
    value = float(line.split(":")[1])
    assert math.isfinite(value) and value > 0.3
    assert "surrogate spearman (held-out): n/a" in blocks[small.name]


def test_cli_fit_and_validate(tmp_path, capsys):
    d = tmp_path / "cpu-aaa-bbb"
    d.mkdir()
    recs = make_records(n_uniform=40, n_neighbour=12, n_zoo=0)
    (d / "h-1-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "m.pkl"
    assert S.main(["fit", "--data", str(tmp_path), "--out", str(out)]) == 0
    s = S.load(out)
    assert s.n_cells == 52 and s.digest == S.digest(recs) and s.feature_version == S.FEATURE_VERSION
    assert S.main(["validate", "--data", str(d)]) == 0
    text = capsys.readouterr().out
    assert "| rf | K-fold by cell | 52 |" in text and "ceiling: seed 0 vs seed 1" in text


def test_flat_forest_equals_sklearn_predict(records):
    from dpc.mutation import sample_genome

    sur = S.fit(records)
    rng = np.random.default_rng(3)
    X = S.feature_matrix([sample_genome(rng) for _ in range(50)] + [r["genome"] for r in records[:50]])
    forest = sur.models["val_miou"]
    assert np.allclose(S.FlatForest(forest).predict(X), forest.predict(X), rtol=0, atol=1e-12)
    assert sur.predict_many([records[0]["genome"]])[0] == pytest.approx(forest.predict(X[50:51])[0], abs=1e-12)
