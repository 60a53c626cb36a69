"""Genome space, encodings, canonical hash, sampling and mutation."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpc.genome import Branch, Genome, GenomeError, parse_genome, space_size
from dpc.mutation import mutate, neighbours, op_choices, sample_genome
from dpc.ops import NUM_OPS, OPS, as_op, op_from_name
from dpc.zoo import TOP1_CITYSCAPES_JSON, ZOO, load_cell, zoo_cell


def test_exactly_81_ops_with_unique_parsable_names():
    assert NUM_OPS == 81 == len({op.name for op in OPS})
    assert sum(op.kind == "conv1x1" for op in OPS) == 1
    assert sum(op.kind == "sep3x3" for op in OPS) == 64
    assert sum(op.kind == "pool" for op in OPS) == 16
    for i, op in enumerate(OPS):
        assert op_from_name(op.name) == op and op.index == i
    assert op_from_name("sep3x3_6x21").size == (6, 21) and op_from_name("pool_2x8").size == (2, 8)


@pytest.mark.parametrize("bad", ["sep3x3_2x2", "pool_3x3", "conv3x3", "", "sep3x3_6", 7])
def test_unknown_op_names_are_value_errors(bad):
    with pytest.raises(ValueError):
        op_from_name(bad)


def test_space_size_is_computed():
    assert space_size(5) == 418_414_128_120 == math.factorial(5) * 81**5
    assert space_size(1) == 81
    with pytest.raises(GenomeError):
        space_size(0)


def test_validation_names_branch_and_problem():
    with pytest.raises(GenomeError, match="branch 0: input 0 out of range"):
        Genome.of((0, "conv1x1"))
    with pytest.raises(GenomeError, match="branch 2: input 2 out of range"):
        Genome.of((-1, "conv1x1"), (0, "conv1x1"), (2, "conv1x1"))
    with pytest.raises(GenomeError, match="branch 1: unknown operation"):
        Genome.of((-1, "conv1x1"), (0, "sep3x3_5x5"))
    with pytest.raises(GenomeError, match="at least one branch"):
        Genome(())
    with pytest.raises(GenomeError, match="branch 1: input must be an integer"):
        Genome((Branch(-1, OPS[0]), Branch("0", OPS[0])))


def test_genome_is_immutable_and_hashable():
    g = zoo_cell("aspp")
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        g.branches = ()
    assert len({g, Genome.parse(str(g))}) == 1


def test_other_branch_counts_are_allowed():
    g = sample_genome(np.random.default_rng(0), branches=3)
    assert len(g) == 3 and Genome.from_vector(g.to_vector()) == g


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 7), st.integers(0, 2**32 - 1))
def test_all_encodings_round_trip(n, seed):
    g = sample_genome(np.random.default_rng(seed), branches=n)
    assert Genome.from_vector(g.to_vector()) == g
    assert Genome.from_params(g.to_params()) == g
    assert Genome.from_json(g.to_json()) == g
    assert Genome.from_deeplab(json.loads(g.to_json())) == g
    assert Genome.parse(str(g)) == g
    assert parse_genome(str(g)) == parse_genome(g.to_json()) == parse_genome(g.to_vector()) == g
    assert "\n" not in str(g)
    c = g.canonical()
    assert c.canonical_hash() == g.canonical_hash() and c.canonical() == c


def test_reference_json_is_read_exactly():
    g = Genome.from_json(TOP1_CITYSCAPES_JSON)
    assert str(g) == "F:sep3x3_1x6 0:sep3x3_18x15 1:sep3x3_6x3 0:sep3x3_1x1 0:sep3x3_6x21"
    assert g.to_deeplab() == json.loads(TOP1_CITYSCAPES_JSON)
    # kernel as a pair and rate as one integer are accepted, pooling writes grid_size
    alt = Genome.from_json('[{"kernel": [3, 3], "rate": 6, "op": "conv", "input": -1},'
                           ' {"op": "pyramid_pooling", "grid_size": [2, 8], "input": 0, "target_size": [33, 33]}]')
    assert str(alt) == "F:sep3x3_6x6 0:pool_2x8"
    assert alt.to_deeplab()[1] == {"op": "pyramid_pooling", "grid_size": [2, 8], "input": 0}


@pytest.mark.parametrize(
    "text, message",
    [
        ("[", "malformed cell JSON"),
        ("{}", "non-empty JSON list"),
        ("[]", "non-empty JSON list"),
        ('[{"op": "conv", "kernel": 1}]', "branch 0: missing 'input'"),
        ('[{"op": "conv", "kernel": 5, "input": -1}]', "branch 0: kernel"),
        ('[{"op": "conv", "kernel": 3, "input": -1}]', "branch 0: 3x3 conv needs a 'rate'"),
        ('[{"op": "conv", "kernel": 3, "rate": [2, 2], "input": -1}]', "branch 0: unknown operation"),
        ('[{"op": "pyramid_pooling", "grid_size": [3, 1], "input": -1}]', "branch 0: unknown operation"),
        ('[{"op": "conv", "kernel": 1, "input": -1}, {"op": "maxpool", "input": 0}]', "branch 1: unknown op"),
        ('[{"op": "conv", "kernel": 1, "input": 1}]', "branch 0: input 1 out of range"),
        ('[{"op": "conv", "kernel": 1, "input": true}]', "branch 0: input must be an integer"),
    ],
)
def test_bad_json_gives_one_line_error_naming_the_problem(text, message):
    with pytest.raises(GenomeError, match=message) as info:
        Genome.from_json(text)
    assert "\n" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-50, 50) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(
        st.sampled_from(["op", "input", "kernel", "rate", "grid_size", "x"]) | st.text(max_size=4), inner, max_size=5),
    max_leaves=20,
))
def test_garbage_json_only_raises_value_errors(cell):
    try:
        g = Genome.from_deeplab(cell)
    except ValueError:
        return
    assert Genome.from_json(g.to_json()) == g


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.binary(max_size=40))
def test_garbage_strings_only_raise_value_errors(text):
    for parse in (Genome.parse, Genome.from_json, parse_genome):
        try:
            parse(text)
        except ValueError:
            pass


def test_garbage_vectors_and_params():
    for bad in ([], [0], [-1, 81], [-1, 0, 1, 0], [-1, -1], ["a", "b"], None, 3):
        with pytest.raises(ValueError):
            Genome.from_vector(bad)
    for bad in ({}, {"b0_op": "conv1x1"}, {"b0_input": -1, "b0_op": "nope"}, [1, 2]):
        with pytest.raises(ValueError):
            Genome.from_params(bad)


# ---- canonical hash ---------------------------------------------------------------------

ISOMORPHIC = [
    # branch order of independent branches
    ("F:conv1x1 F:sep3x3_6x6", "F:sep3x3_6x6 F:conv1x1"),
    # a chain relabelled: children may move as long as they follow their parent
    ("F:sep3x3_1x6 0:sep3x3_18x15 1:sep3x3_6x3 0:sep3x3_1x1 0:sep3x3_6x21",
     "F:sep3x3_1x6 0:sep3x3_6x21 0:sep3x3_1x1 0:sep3x3_18x15 3:sep3x3_6x3"),
    ("F:conv1x1 F:pool_2x2 1:sep3x3_3x3 0:sep3x3_3x3",
     "F:pool_2x2 0:sep3x3_3x3 F:conv1x1 2:sep3x3_3x3"),
]
DIFFERENT = [
    # same ops, different wiring: a chain is not a fan
    ("F:conv1x1 0:sep3x3_6x6", "F:conv1x1 F:sep3x3_6x6"),
    # which branch the child hangs from matters
    ("F:conv1x1 F:sep3x3_3x3 0:pool_1x1", "F:conv1x1 F:sep3x3_3x3 1:pool_1x1"),
    # rates are ordered (rh, rw)
    ("F:sep3x3_1x6", "F:sep3x3_6x1"),
    # multiset of ops differs
    ("F:conv1x1 F:conv1x1", "F:conv1x1 F:pool_1x1"),
    # same multiset, children swapped between two parents with the same op
    ("F:conv1x1 F:conv1x1 0:pool_1x1 0:pool_2x2", "F:conv1x1 F:conv1x1 0:pool_1x1 1:pool_2x2"),
]


@pytest.mark.parametrize("a, b", ISOMORPHIC)
def test_hash_equal_for_isomorphic_cells(a, b):
    ga, gb = Genome.parse(a), Genome.parse(b)
    assert ga != gb
    assert ga.canonical_hash() == gb.canonical_hash()
    assert ga.canonical() == gb.canonical()


@pytest.mark.parametrize("a, b", DIFFERENT)
def test_hash_differs_for_different_cells(a, b):
    assert Genome.parse(a).canonical_hash() != Genome.parse(b).canonical_hash()


def test_hash_invariant_under_random_relabelling():
    rng = np.random.default_rng(1)
    for _ in range(200):
        g = sample_genome(rng)
        # a random topological relabelling: repeatedly pick any branch whose input is placed
        placed, order = {-1: -1}, []
        remaining = list(range(len(g)))
        while remaining:
            ready = [b for b in remaining if g.branches[b].input in placed]
            b = ready[int(rng.integers(len(ready)))]
            placed[b] = len(order)
            order.append(b)
            remaining.remove(b)
        h = Genome.of(*[(placed[g.branches[b].input], g.branches[b].op) for b in order])
        assert h.canonical_hash() == g.canonical_hash()


def test_hash_discriminates_random_cells():
    rng = np.random.default_rng(2)
    cells = {sample_genome(rng) for _ in range(2000)}
    assert len({g.canonical_hash() for g in cells}) == len({g.canonical() for g in cells}) > 1990


# ---- sampling and mutation ----------------------------------------------------------------

def test_sampling_is_seeded_and_uniform():
    a = [sample_genome(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(3)
    samples = [sample_genome(rng) for _ in range(8000)]
    ops = np.bincount([br.op.index for g in samples for br in g.branches], minlength=81)
    assert ops.min() > 0.6 * ops.mean() and ops.max() < 1.4 * ops.mean()
    inputs4 = np.bincount([g.branches[4].input + 1 for g in samples], minlength=5)
    assert inputs4.min() > 0.85 * inputs4.mean()


@pytest.mark.parametrize("kwargs", [{}, {"kind": "op"}, {"kind": "input"}, {"same_family": True}, {"nearby": True}])
def test_mutation_always_valid_and_different(kwargs):
    rng = np.random.default_rng(4)
    for _ in range(500):
        g = sample_genome(rng)
        child = mutate(g, rng, **kwargs)
        assert child != g
        diff = [b for b in range(len(g)) if g.branches[b] != child.branches[b]]
        assert len(diff) == 1
        b = diff[0]
        if kwargs.get("kind") == "op":
            assert child.branches[b].input == g.branches[b].input
        if kwargs.get("kind") == "input":
            assert child.branches[b].op == g.branches[b].op and b >= 1
        if kwargs.get("same_family") and g.branches[b].op.kind != "conv1x1" and child.branches[b].op != g.branches[b].op:
            assert child.branches[b].op.kind == g.branches[b].op.kind


def test_nearby_rate_moves_one_step():
    op = as_op("sep3x3_6x21")
    assert set(o.name for o in op_choices(op, nearby=True)) == {"sep3x3_3x21", "sep3x3_9x21", "sep3x3_6x18"}
    assert set(o.name for o in op_choices(as_op("pool_1x1"), nearby=True)) == {"pool_2x1", "pool_1x2"}
    assert as_op("conv1x1") not in op_choices(as_op("conv1x1"))


def test_mutation_of_single_branch_changes_op():
    g = Genome.parse("F:conv1x1")
    assert mutate(g, np.random.default_rng(0), kind="input") != g


def test_neighbours_are_all_single_changes():
    g = zoo_cell("top1")
    ns = list(neighbours(g))
    assert len(ns) == 5 * 80 + (1 + 2 + 3 + 4) == len(set(ns))
    assert g not in ns


def test_zoo_and_load_cell(tmp_path):
    assert str(ZOO["aspp"]) == "F:conv1x1 F:sep3x3_6x6 F:sep3x3_12x12 F:sep3x3_18x18 F:pool_1x1"
    path = tmp_path / "cell.json"
    path.write_text(TOP1_CITYSCAPES_JSON)
    assert load_cell(str(path)) == load_cell("top1") == load_cell(TOP1_CITYSCAPES_JSON)
    assert load_cell("F:conv1x1 0:pool_1x1") == Genome.parse("F:conv1x1 0:pool_1x1")
    with pytest.raises(ValueError, match="not found"):
        load_cell(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="unknown"):
        zoo_cell("nas-net")
