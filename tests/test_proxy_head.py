"""Heads that are not DPC genomes go through the same evaluator (cache, training, mIOU, result)."""
import pytest
import torch
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from dpc.cell import DensePredictionCell
from dpc.zoo import zoo_cell
from proxy import evaluator as evaluator_module
from proxy.config import get_config
from proxy.errors import EvaluationError, GPUOutOfMemoryError, NaNLossError
from proxy.head import HeadError, measure_module

RATES = [2, 4, 6]  # an 8x8 `test` feature map: rates that still see different context


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def not_a_module(in_channels: int) -> int:
    return in_channels


def small_head(in_channels: int) -> nn.Module:
    """Importable by the CLI test: 1x1 conv to the `test` config's 16 channels."""
    return nn.Sequential(nn.Conv2d(in_channels, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())


def test_aspp_head_is_scored_like_a_cell(test_evaluator):
    ev, cfg = test_evaluator, get_config("test")
    c_in, (h, w), c = ev.in_channels, ev.feature_size, ev.head_channels
    assert c == cfg.concat_channels == 16 and (c_in, h, w) == (320, 8, 8)
    factory = lambda in_channels: ASPP(in_channels, RATES, c)
    r = ev.evaluate(factory, seed=3)
    assert 0 <= r.miou <= 1 and len(r.per_class_iou) == ev.num_classes == 11
    assert r.genome is None and r.config == "test" and r.config_hash == cfg.hash("cpu")
    assert r.iterations == cfg.iterations and r.seed == 3 and r.train_seconds > 0
    # params: the module's own (the classifier is excluded, as for a genome: dpc.cell_cost)
    assert r.params == n_params(ASPP(c_in, RATES, c)) == 149_952
    # FLOPs by hand: 2 x MACs of the 1x1 and three 3x3 convs at 8x8, the pooled 1x1 conv at 1x1,
    # the 1x1 projection of the 5 concatenated branches
    hw = h * w
    assert r.flops == 2 * (hw * c_in * c + 3 * hw * 9 * c_in * c + c_in * c + hw * 5 * c * c)
    again = ev.evaluate(factory, seed=3)
    assert again.miou == r.miou and again.per_class_iou == r.per_class_iou and again.train_loss == r.train_loss
    assert r.to_dict()["genome"] is None


def test_a_genome_as_a_factory_gives_the_genome_s_result(test_evaluator):
    """One code path: the cell built by a user's factory scores exactly like the genome, and the
    measured params/FLOPs equal the analytic dpc.cell_cost."""
    cfg = test_evaluator.config
    g = zoo_cell("top1")
    a = test_evaluator.evaluate(g, seed=1)
    b = test_evaluator.evaluate(lambda c: DensePredictionCell(g, c, cfg.channels, cfg.concat_channels, cfg.dropout), seed=1)
    assert (b.miou, b.per_class_iou, b.train_loss) == (a.miou, a.per_class_iou, a.train_loss)
    assert (b.params, b.flops) == (a.params, a.flops) and a.genome == str(g) and b.genome is None


def test_wrong_output_shape_is_a_one_line_error_before_training(test_evaluator, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained a head of the wrong shape")

    monkeypatch.setattr(evaluator_module, "train_and_evaluate", no_training)
    c = test_evaluator.head_channels
    with pytest.raises(HeadError) as info:
        test_evaluator.evaluate(lambda c_in: ASPP(c_in, RATES, c + 1))
    msg = str(info.value)
    assert isinstance(info.value, EvaluationError) and isinstance(info.value, ValueError) and "\n" not in msg
    assert "gave shape (1, 17, 8, 8) for features of shape (1, 320, 8, 8); expected (1, 16, 8, 8)" in msg
    assert info.value.reason == msg
    with pytest.raises(HeadError, match=r"gave shape \(1, 16, 4, 4\)"):  # a stride that shrinks the map
        test_evaluator.evaluate(lambda c_in: nn.Conv2d(c_in, c, 3, stride=2, padding=1))
    with pytest.raises(HeadError, match="returned int, not an nn.Module"):
        test_evaluator.evaluate(lambda c_in: 3)
    with pytest.raises(TypeError, match="not a module instance"):
        test_evaluator.evaluate(nn.Conv2d(320, c, 1))
    with pytest.raises(TypeError, match="got str"):
        test_evaluator.evaluate("F:conv1x1")
    monkeypatch.undo()
    assert test_evaluator.evaluate(small_head).genome is None  # still usable


def test_nan_callback_and_out_of_memory_behave_as_for_a_genome(test_evaluator, cache_dir):
    def nan_head(c_in):
        conv = nn.Conv2d(c_in, 16, 1)
        nn.init.constant_(conv.bias, float("nan"))
        return conv

    with pytest.raises(NaNLossError, match="loss became nan at step 0"):
        test_evaluator.evaluate(nan_head)

    class OOMHead(nn.Module):  # fails in the shape probe, before training
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    with pytest.raises(GPUOutOfMemoryError, match="out of memory on cpu with batch 4: CUDA out of memory"):
        test_evaluator.evaluate(lambda c_in: OOMHead())

    ev = evaluator_module.ProxyEvaluator(get_config("test").replace(eval_every=5), cache_dir=cache_dir, device="cpu")
    seen = []
    ev.evaluate(small_head, callback=lambda step, miou: seen.append((step, miou)))
    assert [s for s, _ in seen] == [5, 10, 15, 20] and all(0 <= m <= 1 for _, m in seen)


def test_measure_module_leaves_the_module_and_rng_unchanged():
    head = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.5))
    before = {k: v.clone() for k, v in head.state_dict().items()}
    torch.manual_seed(0)
    cost = measure_module(head, 8, (5, 7), 4)
    after_rng = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(after_rng, torch.rand(1)) and head.training
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())  # BN stats untouched
    assert cost.params == 8 * 4 * 9 + 4 + 2 * 4 and cost.flops == 2 * 5 * 7 * 8 * 4 * 9
    with pytest.raises(HeadError, match="gave a tuple, not a tensor"):
        measure_module(_Pair(), 8, (5, 7), 4)


class _Pair(nn.Module):
    def forward(self, x):
        return x, x


def test_cli_scores_a_head_factory(cache_dir, capsys):
    from proxy.evaluate import main

    def cli(*args):
        code = main([*args, "--config", "test", "--cache-dir", cache_dir])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = cli("--head", "tests.test_proxy_head:small_head", "--seed", "1")
    assert code == 0, err
    assert "head          tests.test_proxy_head:small_head" in out and "seed 1" in out
    assert f"params        {320 * 16 + 32:,}" in out and f"FLOPs         {2 * 64 * 320 * 16:,} per image" in out
    code, _, err = cli("--head", "tests.test_proxy_head:not_a_module")
    assert code == 1 and err == "evaluation failed: head factory tests.test_proxy_head.not_a_module returned int, not an nn.Module\n"
    for spec, msg in (("nonexistent_mod:f", "cannot import"), ("tests.test_proxy_head:nope", "no attribute"),
                      ("tests.test_proxy_head", "package.module:factory"), ("tests.test_proxy_head:RATES", "not a factory")):
        code, _, err = cli("--head", spec)
        assert code == 2 and msg in err and err.strip().count("\n") == 0, (spec, err)
    with pytest.raises(SystemExit):
        main(["aspp", "--head", "tests.test_proxy_head:small_head"])
