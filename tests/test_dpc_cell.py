"""The PyTorch cell: reference structure, shapes on any input size, analytic params/FLOPs."""
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dpc import kernels
from dpc.cell import DensePredictionCell, PyramidPooling, SeparableConv, pooling_kernel
from dpc.cost import cell_cost
from dpc.genome import Genome
from dpc.ops import OPS
from dpc.zoo import zoo_cell


def trainable(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def reference_trainable_params(genome, cin, depth=256, concat=256):
    """Count the variables DeepLab's build_cell creates: slim convs without biases (a normalizer
    is set), batch_norm with scale=True (gamma and beta trainable), split_separable_conv2d =
    depthwise (3x3xCin) + BN and pointwise (Cin x depth) + BN."""
    total = 0
    for br in genome.branches:
        c = cin if br.input == -1 else depth
        if br.op.kind == "sep3x3":
            total += 3 * 3 * c + 2 * c + c * depth + 2 * depth
        else:
            total += c * depth + 2 * depth
    return total + len(genome) * depth * concat + 2 * concat


@pytest.mark.parametrize("cin", [2048, 320])
def test_top1_cityscapes_matches_reference_parameter_count(cin):
    g = zoo_cell("top1_cityscapes")
    assert trainable(DensePredictionCell(g, cin)) == reference_trainable_params(g, cin)


def test_table1_parameter_counts():
    # paper Table 1: top-1 DPC 0.81M params on Xception (2048), 0.36M on MobileNet-v2 (320)
    g = zoo_cell("top1_cityscapes")
    assert round(cell_cost(g, 2048, 65, 129).paper_params / 1e6, 2) == 0.81
    assert round(cell_cost(g, 320, 65, 129).paper_params / 1e6, 2) == 0.36
    # MAdds 6.84B / 3.00B in the paper; ours count conv multiply-adds only (within 1%)
    assert cell_cost(g, 2048, 65, 129).paper_madds == pytest.approx(6.84e9, rel=0.01)
    assert cell_cost(g, 320, 65, 129).paper_madds == pytest.approx(3.00e9, rel=0.01)


def test_structure_follows_reference():
    cell = DensePredictionCell(Genome.parse("F:sep3x3_6x21 0:pool_2x8 1:conv1x1"), 12, channels=8, concat_channels=6)
    sep = cell.branches[0]
    assert isinstance(sep, SeparableConv)
    dw, pw = sep[0], sep[1]
    assert dw[0].groups == 12 and dw[0].dilation == (6, 21) and dw[0].padding == (6, 21) and dw[0].kernel_size == (3, 3)
    assert pw[0].kernel_size == (1, 1) and pw[0].out_channels == 8
    for m in cell.modules():
        if isinstance(m, torch.nn.Conv2d):
            assert m.bias is None
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.eps == 1e-5
    assert isinstance(cell.branches[1], PyramidPooling) and cell.branches[1].grid == (2, 8)
    assert cell.branches[1].conv[0].in_channels == 8  # reads branch 0, not the features
    assert cell.project[0].in_channels == 3 * 8 and cell.out_channels == 6
    assert DensePredictionCell(zoo_cell("aspp"), 4, 4, 4, rate_multiplier=2).branches[3][0][0].dilation == (36, 36)


def test_pooling_kernel_is_reference_formula():
    for size in range(1, 70):
        for grid in (1, 2, 4, 8):
            assert pooling_kernel(size, grid) == int((size - 1) / grid + 1)
            assert 1 <= pooling_kernel(size, grid) <= size


def test_grid_one_pooling_is_image_pooling():
    pool = PyramidPooling(3, 2, (1, 1)).eval()
    x = torch.randn(2, 3, 7, 5)
    y = pool(x)
    expected = pool.conv(x.mean(dim=(2, 3), keepdim=True)).expand_as(y)
    assert torch.allclose(y, expected, atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 7), (9, 4), (33, 17)])
def test_every_op_keeps_spatial_size_at_odd_and_tiny_sizes(size):
    x = torch.randn(2, 6, *size)
    for op in OPS:
        cell = DensePredictionCell(Genome.of((-1, op), (0, op)), 6, channels=4, concat_channels=5).eval()
        with torch.no_grad():
            y = cell(x)
        assert y.shape == (2, 5, *size), op.name
        assert torch.isfinite(y).all()


def test_rate_larger_than_map_only_sees_centre_tap():
    # zero padding: with rate >= size, the off-centre taps of a 3x3 kernel read only padding
    sep = SeparableConv(3, 2, (21, 21)).eval()
    x = torch.randn(1, 3, 5, 5)
    dw = sep[0][0]
    centre = torch.nn.functional.conv2d(x, dw.weight[:, :, 1:2, 1:2], groups=3)
    assert torch.allclose(dw(x), centre, atol=1e-6)


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_analytic_cost_matches_module_and_flop_counter(op):
    g = Genome.of((-1, op), (0, op), (-1, "conv1x1"))
    cin, h, w, ch, cc = 10, 13, 9, 6, 7
    cell = DensePredictionCell(g, cin, channels=ch, concat_channels=cc).eval()
    cost = cell_cost(g, cin, h, w, ch, cc)
    assert cost.params == trainable(cell)
    with FlopCounterMode(display=False) as counter, torch.no_grad(), kernels.using("reference"):
        cell(torch.randn(1, cin, h, w))  # the nn formulation: pooling and resizing count nothing
    assert cost.flops == counter.get_total_flops()


def test_backward_reaches_every_parameter():
    cell = DensePredictionCell(zoo_cell("top1"), 8, channels=4, concat_channels=4)
    cell(torch.randn(2, 8, 9, 9)).sum().backward()
    assert all(p.grad is not None for p in cell.parameters())


def test_bad_arguments():
    with pytest.raises(ValueError, match="channel counts"):
        DensePredictionCell(zoo_cell("aspp"), 0)
    with pytest.raises(ValueError, match="dropout"):
        DensePredictionCell(zoo_cell("aspp"), 8, dropout=1.0)
    with pytest.raises(ValueError, match="feature size"):
        cell_cost(zoo_cell("aspp"), 8, 0, 4)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "dpc", *args], capture_output=True, text=True, timeout=120)


def test_cli_describe_and_sample():
    out = run_cli("describe", "top1", "--in-channels", "2048")
    assert out.returncode == 0, out.stderr
    assert "F:sep3x3_1x6 0:sep3x3_18x15" in out.stdout and "814,080" in out.stdout
    assert f"{cell_cost(zoo_cell('top1'), 2048, 65, 129).params:,}" in out.stdout
    out = run_cli("sample", "-n", "4", "--seed", "0")
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4 and len({Genome.parse(s) for s in lines}) == 4
    assert run_cli("sample", "-n", "4", "--seed", "0").stdout == out.stdout
    bad = run_cli("describe", "F:sep3x3_2x2")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "unknown operation" in bad.stderr
