"""dpc.kernels' fast CPU formulations equal the nn reference: outputs and gradients, all 81 ops."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpc import kernels, ops
from dpc.cell import DensePredictionCell, build_op
from dpc.genome import Genome
from proxy.config import get_config


def run(module, x, mode, grad_out=None):
    """Output and gradients (input, then parameters) of one forward + backward under ``mode``."""
    x = x.clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    with kernels.using(mode):
        y = module(x)
        y.backward(grad_out if grad_out is not None else torch.ones_like(y))
    return [y.detach(), x.grad] + [p.grad for p in module.parameters()]


def assert_same(a, b, rtol=1e-4, atol=1e-5):
    """Close elementwise, with the absolute tolerance scaled by the tensor's size (BN over a
    pooled 1x1 map normalises a few values: float rounding of the input is amplified there)."""
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=rtol, atol=atol * max(1.0, float(v.abs().max())) * 10)


@pytest.mark.parametrize("hw", [(9, 7), (33, 33), (4, 5)])
def test_every_op_equals_reference_outputs_and_gradients(hw):
    torch.manual_seed(0)
    # a per-map offset: the pooled values must vary, else BN divides float rounding by a tiny std
    x = torch.rand(4, 6, *hw) * 3 + torch.randn(4, 6, 1, 1) * 2
    for op in ops.OPS:
        module = build_op(op, 6, 5).train()
        g = torch.randn(4, 5, *hw)
        state = {k: v.clone() for k, v in module.state_dict().items()}
        ref = run(module, x, "reference", g)
        module.load_state_dict(state)  # BN running stats back, so both runs start equal
        fast = run(module, x, "fast", g)
        try:
            assert_same(fast, ref)
        except AssertionError as e:
            raise AssertionError(f"{op.name} at {hw}: {e}") from None


def test_rates_larger_than_the_map_and_the_multiplier():
    torch.manual_seed(1)
    x = torch.randn(1, 4, 3, 23)  # rate 21 > 3 rows; < 23 columns; x2 multiplier: 42 > both
    for name in ("sep3x3_21x21", "sep3x3_21x1", "sep3x3_1x21", "sep3x3_15x3"):
        op = ops.op_from_name(name)
        for mult in (1, 2):
            module = op.family.module(4, 3, op.size, mult).train()
            state = {k: v.clone() for k, v in module.state_dict().items()}
            ref = run(module, x, "reference")
            module.load_state_dict(state)
            assert_same(run(module, x, "fast"), ref)


def test_whole_cell_equal_without_dropout():
    torch.manual_seed(2)
    genome = Genome.parse("F:sep3x3_6x21 0:pool_2x4 F:pool_1x1 1:sep3x3_1x1 F:conv1x1")
    cell = DensePredictionCell(genome, 8, 6, 5, dropout=0.0).train()
    state = {k: v.clone() for k, v in cell.state_dict().items()}
    x = torch.randn(2, 8, 13, 11)
    ref = run(cell, x, "reference")
    cell.load_state_dict(state)
    assert_same(run(cell, x, "fast"), ref)


@pytest.mark.parametrize("shape,size", [((2, 3, 33, 33), (129, 129)), ((1, 2, 1, 1), (33, 33)), ((1, 2, 5, 7), (5, 7)),
                                        ((1, 1, 4, 6), (1, 9)), ((2, 2, 17, 9), (33, 20))])
def test_resize_equals_interpolate(shape, size):
    x = torch.randn(shape, requires_grad=True)
    with kernels.using("fast"):
        fast = kernels.resize_bilinear(x, size)
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    (gf,) = torch.autograd.grad(fast, x, g)
    (gr,) = torch.autograd.grad(ref, x, g)
    torch.testing.assert_close(gf, gr, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", [(33, 33), (17, 17), (5, 5), (33, 5), (1, 1), (2, 9)])
def test_pool_equals_avg_pool2d(kernel):
    x = (torch.rand(2, 3, 33, 33) * 6).requires_grad_()
    with kernels.using("fast"):
        fast = kernels.avg_pool_valid(x, kernel)
    ref = F.avg_pool2d(x, kernel, stride=1)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(fast, x, g)[0], torch.autograd.grad(ref, x, g)[0], rtol=1e-5, atol=1e-5)


def test_argmax_equals():
    x = torch.randn(2, 11, 17, 19)
    with kernels.using("fast"):
        assert torch.equal(kernels.argmax_channels(x), x.argmax(1))


def test_dropout_keeps_1_minus_p_scales_and_masks_the_gradient():
    torch.manual_seed(3)
    x = torch.ones(4, 64, 33, 33, requires_grad=True)
    with kernels.using("fast"):
        y = kernels.dropout(x, 0.1, training=True)
        assert kernels.dropout(x, 0.1, training=False) is x
    keep = y.detach() != 0
    q = 1 - round(0.1 * 2**15) / 2**15
    assert abs(keep.float().mean().item() - q) < 0.005  # 279k draws: sd 0.0006
    torch.testing.assert_close(y.detach()[keep], torch.full_like(y.detach()[keep], 1 / q))
    y.backward(torch.full_like(y, 2.0))
    torch.testing.assert_close(x.grad, torch.where(keep, 2.0 / q, 0.0))
    # the per-element draws are independent: neighbours' keep decisions do not agree more than chance
    k = keep.flatten().float()
    agree = (k[:-1] == k[1:]).float().mean().item()
    assert abs(agree - (q * q + (1 - q) ** 2)) < 0.01


def test_dropout_follows_the_seed():
    def draw(seed):
        torch.manual_seed(seed)
        with kernels.using("fast"):
            return kernels.dropout(torch.ones(1000), 0.5, training=True)

    assert torch.equal(draw(5), draw(5)) and not torch.equal(draw(5), draw(6))


def test_reference_mode_is_the_nn_op_and_mode_is_restored():
    x = torch.randn(1, 2, 9, 9)
    with kernels.using("reference"):
        assert kernels.mode() == "reference"
        torch.manual_seed(0)
        a = kernels.dropout(x, 0.3, training=True)
    torch.manual_seed(0)
    assert torch.equal(a, F.dropout(x, 0.3, training=True))
    assert kernels.mode() == "fast"
    with pytest.raises(ValueError, match="kernels must be one of"):
        kernels.set_mode("quick")


def test_config_kernels_field_enters_the_hash_and_is_checked():
    cpu = get_config("cpu")
    assert cpu.kernels == "fast"
    assert cpu.hash("cpu") != cpu.replace(kernels="reference").hash("cpu")
    with pytest.raises(ValueError, match="kernels must be 'fast' or 'reference'"):
        cpu.replace(kernels="turbo")


def test_fast_and_reference_training_agree_on_synthetic_data():
    """Same seed, same data: the two kernel sets train to the same loss (only rounding and the
    dropout draw differ; with dropout 0 the runs match to float precision)."""
    from proxy.train import SegmentationHead, Split, train_and_evaluate

    cfg = get_config("test").replace(dropout=0.0, iterations=6)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((8, 6, 9, 9)).astype(np.float32)).half()
    y = torch.from_numpy(rng.integers(0, 3, (8, 33, 33)).astype(np.uint8))
    outs = []
    for mode in ("reference", "fast"):
        torch.manual_seed(0)
        model = SegmentationHead(Genome.parse("F:sep3x3_3x6 F:pool_2x2 0:conv1x1"), 6, 3, cfg)
        outs.append(train_and_evaluate(model, [{"params": list(model.parameters())}], Split(x, y), Split(x, y), 3,
                                       cfg.replace(kernels=mode), seed=0))
    assert abs(outs[0].train_loss - outs[1].train_loss) < 1e-4
    assert abs(outs[0].miou - outs[1].miou) < 1e-3
