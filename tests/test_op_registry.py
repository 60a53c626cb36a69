"""Op families are data: a toy family declared here (and nowhere else) is parsed, encoded,
built, costed, mutated, drawn and searched like the 81 built-in ops, which keep their order."""
import hashlib
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import dpc
from dpc import kernels, ops
from dpc.cell import DensePredictionCell, conv_bn_relu
from dpc.cost import cell_cost
from dpc.genome import Genome, GenomeError, space_size
from dpc.mutation import mutate, op_choices, sample_genome
from dpc.ops import GRIDS, RATES, SIZE, OpCost, OpFamily, SyntheticRole, register_family, unregister_family
from strategies.space import search_space
from strategies.synthetic import StructuredObjective

BUILTIN_NAMES = (["conv1x1"] + [f"sep3x3_{h}x{w}" for h in RATES for w in RATES]
                 + [f"pool_{h}x{w}" for h in GRIDS for w in GRIDS])


def max_pool(cin: int, cout: int, size: tuple[int, ...], rate_multiplier: int = 1) -> nn.Module:
    """k x k max pool (stride 1, same size), then the 1x1 conv + BN + ReLU every op ends with."""
    return nn.Sequential(nn.MaxPool2d(size[0], stride=1, padding=size[0] // 2), conv_bn_relu(cin, cout, 1))


def max_pool_cost(cin: int, cout: int, size: tuple[int, ...], height: int, width: int) -> OpCost:
    return OpCost(weights=cin * cout, norm=2 * cout, madds=height * width * cin * cout)


MAXPOOL = OpFamily(
    "maxpool", "maxpool_{0}x{0}", axes=((3, 5),), axis_names=("k",), build=max_pool, cost=max_pool_cost,
    deeplab={"op": "max_pool", "kernel": SIZE}, label="max pool\n{0}x{0}", colour="#c7e9c0",
    synthetic=SyntheticRole(peak=0.9, from_features=0.2),
)


@pytest.fixture
def maxpool():
    register_family(MAXPOOL)
    try:
        yield MAXPOOL
    finally:
        for family in ops.FAMILIES[3:]:  # the toy one, and any a failed test left behind
            unregister_family(family.name)
        assert ops.OP_NAMES == tuple(BUILTIN_NAMES) and ops.NUM_OPS == 81


def test_builtin_ops_keep_their_names_and_order():
    assert ops.OP_NAMES == tuple(BUILTIN_NAMES)
    assert hashlib.sha256(" ".join(ops.OP_NAMES).encode()).hexdigest()[:16] == "ed5453306ce70c07"  # computed before the registry existed
    assert [f.name for f in ops.FAMILIES] == ["conv1x1", "sep3x3", "pool"]
    assert dpc.NUM_OPS == 81 and space_size(5) == 418_414_128_120


def test_registering_appends_and_old_encodings_decode_the_same(maxpool):
    assert ops.OP_NAMES[:81] == tuple(BUILTIN_NAMES) and ops.OP_NAMES[81:] == ("maxpool_3x3", "maxpool_5x5")
    assert dpc.NUM_OPS == 83 and space_size(2) == 2 * 83**2
    top1 = dpc.zoo_cell("top1_cityscapes")
    assert Genome.from_vector([-1, 3, 0, 54, 1, 18, 0, 1, 0, 24]) == top1  # an 81-op vector, stored before
    assert top1.canonical_hash() == "eba9c1b06690810e"
    assert search_space(2)["b1_op"].choices == tuple(ops.OP_NAMES)
    with pytest.raises(ValueError, match="already registered"):
        register_family(MAXPOOL)
    with pytest.raises(ValueError, match="kernel 1 and 3"):
        register_family(OpFamily("conv5x5", "conv5x5", build=max_pool, cost=max_pool_cost, deeplab={"op": "conv", "kernel": 1}))
    with pytest.raises(ValueError, match="letters, digits"):
        register_family(OpFamily("spaced", "max pool_{0}", axes=((3,),), build=max_pool, cost=max_pool_cost,
                                 deeplab={"op": "spaced", "kernel": SIZE}))
    with pytest.raises(ValueError, match="can be removed"):
        unregister_family("pool")


def test_parse_and_json_round_trip(maxpool):
    g = Genome.parse("F:maxpool_3x3 0:sep3x3_6x6 1:maxpool_5x5 F:conv1x1")
    assert [br.op.index for br in g.branches] == [81, 19, 82, 0]
    assert g.to_deeplab()[0] == {"op": "max_pool", "kernel": 3, "input": -1}
    assert g.to_deeplab()[1] == {"kernel": 3, "rate": [6, 6], "op": "conv", "input": 0}
    assert Genome.from_json(g.to_json()) == g == Genome.from_vector(g.to_vector()) == Genome.from_params(g.to_params())
    assert Genome.from_json('[{"op": "max_pool", "kernel": 5, "input": -1}]') == Genome.parse("F:maxpool_5x5")
    assert Genome.parse("F:maxpool_3x3 F:conv1x1").canonical_hash() == Genome.parse("F:conv1x1 F:maxpool_3x3").canonical_hash()
    with pytest.raises(GenomeError, match=r"unknown operation 'maxpool_7x7' \(maxpool sizes must be in \(3, 5\)\); "
                                          r"expected conv1x1, sep3x3_RxR, pool_GxG or maxpool_KxK"):
        Genome.parse("F:maxpool_7x7")
    with pytest.raises(GenomeError, match="maxpool_3x5"):
        Genome.parse("F:maxpool_3x5")
    for bad, message in (('[{"op": "max_pool", "input": -1}]', "max_pool needs a 'kernel' \\[k\\]"),
                         ('[{"op": "max_pool", "kernel": [3, 3], "input": -1}]', "kernel must be an integer"),
                         ('[{"op": "avg_pool", "input": -1}]', "expected 'conv', 'pyramid_pooling' or 'max_pool'")):
        with pytest.raises(GenomeError, match=message):
            Genome.from_json(bad)


def test_cell_builds_runs_and_costs_what_it_counts(maxpool):
    g = Genome.parse("F:maxpool_5x5 0:sep3x3_3x6 F:pool_2x2 0:maxpool_3x3")
    cell = DensePredictionCell(g, 6, channels=4, concat_channels=5).eval()
    assert isinstance(cell.branches[0][0], nn.MaxPool2d) and cell.branches[0][0].kernel_size == 5
    x = torch.randn(2, 6, 9, 7)
    with FlopCounterMode(display=False) as counter, kernels.using("reference"):
        y = cell(x)
    assert y.shape == (2, 5, 9, 7) and torch.isfinite(y).all()
    cost = cell_cost(g, 6, 9, 7, channels=4, concat_channels=5)
    assert cost.params == sum(p.numel() for p in cell.parameters() if p.requires_grad)
    assert cost.flops == counter.get_total_flops() // 2  # cell_cost counts one image, the batch is 2
    assert cost.paper_params == 6 * 4 + (9 * 4 + 4 * 4) + 6 * 4 + 4 * 4


def test_mutations_stay_valid_and_in_the_family(maxpool):
    op = ops.as_op("maxpool_3x3")
    assert op_choices(op, nearby=True) == [ops.as_op("maxpool_5x5")]
    assert op_choices(op, same_family=True) == [ops.as_op("maxpool_5x5")]
    assert len(op_choices(op)) == 82
    rng = np.random.default_rng(0)
    g = Genome.parse("F:maxpool_3x3 0:maxpool_5x5 0:conv1x1")
    for i in range(300):
        child = mutate(g, rng, kind="op", same_family=i % 2 == 0, nearby=i % 3 == 0)
        assert child != g and Genome.from_json(child.to_json()) == child
        changed = [b for b in range(3) if child.branches[b] != g.branches[b]]
        if i % 2 == 0 and changed[0] < 2:
            assert child.branches[changed[0]].op.kind == "maxpool"
    drawn = {br.op.name for _ in range(200) for br in sample_genome(rng).branches}
    assert {"maxpool_3x3", "maxpool_5x5"} <= drawn


def test_cell_graph_and_choice_plot_draw_it(maxpool, tmp_path):
    from analysis import plots
    from analysis.cell_graph import draw_cell, layout

    g = Genome.parse("F:maxpool_5x5 0:sep3x3_3x6 F:pool_2x2")
    assert layout(g).labels["b0"] == "b0: max pool\n5x5"
    drawn = draw_cell(g, tmp_path / "cell", formats=("png",))
    assert drawn.files[0].stat().st_size > 5_000
    data = plots.plot_choice_frequency([g, Genome.parse("F:maxpool_3x3 0:conv1x1 1:sep3x3_1x1")], tmp_path / "choices")
    assert data["families"] == {"conv1x1": 1, "sep3x3": 2, "pool": 1, "maxpool": 2}
    assert data["ops"]["maxpool_5x5"] == 1 and np.sum(data["rates"]) == 2 and np.sum(data["grids"]) == 1


def test_a_search_proposes_and_evaluates_the_new_ops(maxpool):
    import strategies

    objective = StructuredObjective(seed=0)
    assert objective.u.shape == (83,) and objective.known_optimum()[0] == 1.0
    assert objective(objective.known_optimum()[1]) == pytest.approx(1.0)
    seen = 0  # branches with a toy op: 2 ops in 83, so about 11 of 450
    for strategy, budget in (("random", 60), ("evolution", 30)):
        result = strategies.search("synthetic", strategy, budget=budget, seed=1)
        trials = result.study.trials
        assert len(trials) == budget and all(t.value is not None for t in trials)
        for t in trials:
            g = Genome.from_params(t.params)
            assert t.value == pytest.approx(objective(g))
            seen += sum(br.op.kind == "maxpool" for br in g.branches)
    assert seen >= 4
    assert json.loads(result.best_genome.to_json())  # the best cell is written like any other
