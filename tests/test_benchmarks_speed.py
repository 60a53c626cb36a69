"""The speed benchmarks count and wire what they claim (no assertion on speed: timings are noise here)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks import op_cost, proxy_speed
from dpc import kernels
from dpc.genome import Genome
from proxy.config import PROXY_CONFIGS

TINY = op_cost.Shape("tiny", 1, 16, 9, 8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: a second thread only adds waits (seconds when another process holds a core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_byte_counter_counts_inputs_and_outputs_of_an_add():
    a, b = torch.randn(100, 10), torch.randn(10)
    assert op_cost.count_bytes(lambda: a + b) == 4 * (1000 + 10 + 1000)


def test_byte_counter_skips_views_and_counts_an_expanded_tensor_by_its_storage():
    a, b = torch.randn(100, 10), torch.randn(10)
    assert op_cost.count_bytes(lambda: a.view(10, 100).t().reshape(100, 10)) == 0
    assert op_cost.count_bytes(lambda: b.expand(100, 10).contiguous()) == 4 * (10 + 1000)


@pytest.mark.parametrize("input_grad", [False, True])
def test_flops_of_a_1x1_conv_forward_and_backward_are_analytic(input_grad):
    n, cin, cout, h, w = 2, 6, 5, 7, 3
    conv = nn.Conv2d(cin, cout, 1, bias=False)
    x = torch.randn(n, cin, h, w, requires_grad=input_grad)
    passes = 3 if input_grad else 2  # forward, weight gradient, input gradient
    assert op_cost.count_flops(lambda: conv(x).sum().backward()) == passes * 2 * n * cin * cout * h * w


def test_flops_of_a_depthwise_conv_count_its_groups_in_the_backward():
    """torch's own formula counts the weight gradient as a dense conv (x channels)."""
    n, c, h, w = 2, 8, 9, 9
    conv = nn.Conv2d(c, c, 3, padding=6, dilation=6, groups=c, bias=False)
    x = torch.randn(n, c, h, w, requires_grad=True)
    assert op_cost.count_flops(lambda: conv(x).sum().backward()) == 3 * 2 * 9 * n * c * h * w


def test_roofline_is_the_larger_of_compute_and_memory_time():
    machine = op_cost.Machine(gflops=10.0, gbps=2.0)
    assert op_cost.roofline_ms(10**9, 0, machine) == pytest.approx(100.0)  # compute-bound
    assert op_cost.roofline_ms(10**9, 10**9, machine) == pytest.approx(500.0)  # memory-bound
    assert op_cost.roofline_ms(10**6, 10**6, machine) == pytest.approx(0.5)


def test_op_rows_on_a_tiny_shape_put_conv1x1_first_and_give_a_worst_ratio():
    machine = op_cost.Machine(gflops=10.0, gbps=2.0)
    rows = op_cost.op_rows(["sep3x3_6x6", "pool_2x2"], TINY, machine, repeats=1)
    assert [r.name for r in rows] == ["conv1x1", "sep3x3_6x6", "pool_2x2"]
    assert all(r.fast_ms > 0 and r.ref_ms > 0 and r.roof_ms > 0 and r.flops > 0 and r.nbytes > 0 for r in rows)
    assert op_cost.worst_vs_conv1x1(rows) >= 1.0
    assert len(op_cost.op_table(rows)[0]) == 10


def test_op_passes_leave_the_kernel_mode_as_it_was():
    run = op_cost.op_pass("pool_4x4", TINY, input_grad=True)
    with kernels.using("reference"):
        op_cost.paired_ms({m: op_cost.under(m, run) for m in op_cost.MODES}, repeats=1, warmup=0)
        assert kernels.mode() == "reference"


def test_a_step_row_on_a_tiny_config_counts_the_whole_step():
    cfg = PROXY_CONFIGS["test"]
    row = op_cost.step_row("aspp", Genome.parse("F:conv1x1 0:sep3x3_3x3 F:pool_2x2"), cfg, TINY, 17,
                           op_cost.Machine(10.0, 2.0), repeats=1)
    assert row.fast_ms > 0 and row.ref_ms > 0 and row.roof_ms > 0 and row.nbytes > 0


def test_cells_per_hour_on_a_tiny_config_is_positive_for_both_kernel_sets():
    cfg = PROXY_CONFIGS["test"]
    splits = proxy_speed.synthetic_splits(proxy_speed.Sizes(channels=8, feature=5, image=17, train=8, val=5, test=3))
    timings = [proxy_speed.time_cell(g, cfg, splits, steps=1) for g in proxy_speed.random_cells(2)]
    for mode in op_cost.MODES:
        assert proxy_speed.cells_per_hour(timings, mode, cfg.iterations) > 0
        assert all(t.step_ms[mode] > 0 and t.eval_s[mode] > 0 for t in timings)


def test_random_cells_are_a_fixed_sample():
    assert [str(g) for g in proxy_speed.random_cells(3)] == [str(g) for g in proxy_speed.random_cells(3)]
