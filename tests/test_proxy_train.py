"""The training loop on small in-memory features: learning, determinism, NaN, callbacks."""
import pytest
import torch

from dpc.zoo import zoo_cell
from proxy.config import PROXY_CONFIGS, get_config
from proxy.errors import NaNLossError
from proxy.train import SegmentationHead, Split, poly_lr, train_and_evaluate

# synthetic features, no images to mirror: no flip (the mirrored-images flip needs Split.mirrored)
CFG = PROXY_CONFIGS["test"].replace(iterations=30, channels=8, concat_channels=8, lr=0.1, loss_stride=1, flip="none")


def toy_split(n, seed, noise=0.5):
    """Labels at 4x the feature resolution; class k's features carry a +2 offset on channel k."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n, 1, 3, 3), generator=g).float()
    labels = torch.nn.functional.interpolate(labels, size=(9, 9), mode="nearest").long()[:, 0]
    feats = torch.randn(n, 6, 9, 9, generator=g) * noise
    feats.scatter_add_(1, labels[:, None], torch.full((n, 1, 9, 9), 2.0))
    big = torch.nn.functional.interpolate(labels[:, None].float(), size=(33, 33), mode="nearest")[:, 0]
    return Split(feats.half(), big.to(torch.uint8))


def run(cfg=CFG, seed=0, callback=None, train=None, head=None):
    torch.manual_seed(seed)
    model = SegmentationHead(zoo_cell("aspp") if head is None else head, 6, 3, cfg)
    return train_and_evaluate(model, [{"params": list(model.parameters())}], train or toy_split(16, 1), toy_split(8, 2), 3, cfg, seed, callback)


def test_learns_a_separable_task():
    out = run()
    assert out.miou > 0.6 and out.iterations == 30 and len(out.per_class_iou) == 3
    assert out.train_seconds > 0 and out.eval_seconds > 0


def test_learns_with_a_head_that_is_not_a_cell():
    out = run(head=lambda c: torch.nn.Sequential(torch.nn.Conv2d(c, 8, 3, padding=1), torch.nn.ReLU()))
    assert out.miou > 0.6
    model = SegmentationHead(torch.nn.Identity(), 8, 3, CFG)  # a module already built is used as is
    assert isinstance(model.cell, torch.nn.Identity) and model(torch.zeros(1, 8, 5, 5)).shape == (1, 3, 5, 5)


def test_same_seed_same_result_different_seed_differs():
    a, b, c = run(seed=3), run(seed=3), run(seed=4)
    assert a.miou == b.miou and a.per_class_iou == b.per_class_iou and a.train_loss == b.train_loss
    assert a.train_loss != c.train_loss


def test_callback_receives_intermediate_miou_and_can_stop():
    seen = []
    run(CFG.replace(eval_every=10), callback=lambda step, miou: seen.append((step, miou)))
    assert [s for s, _ in seen] == [10, 20, 30] and all(0 <= m <= 1 for _, m in seen)

    class Stop(Exception):
        pass

    def stop(step, miou):
        raise Stop

    with pytest.raises(Stop):
        run(CFG.replace(eval_every=5), callback=stop)


def test_eval_every_changes_neither_the_result_nor_the_hash():
    """Intermediate evaluations leave training untouched, so eval_every is out of the config hash:
    a search's trials (curves every N steps) and a noise study's (none) of one cell and seed are
    the same result and can be pooled (DPC-Bench imports them)."""
    plain = run(CFG.replace(eval_every=0), seed=2)
    seen = []
    curved = run(CFG.replace(eval_every=7), seed=2, callback=lambda step, miou: seen.append(step))
    assert seen == [7, 14, 21, 28, 30]
    assert (curved.miou, curved.per_class_iou, curved.train_loss) == (plain.miou, plain.per_class_iou, plain.train_loss)
    assert CFG.replace(eval_every=7).hash("cpu") == CFG.hash("cpu") != CFG.replace(iterations=31).hash("cpu")


def test_nan_loss_raises_with_reason():
    bad = toy_split(16, 1)
    bad.inputs[0, 0, 0, 0] = float("nan")
    bad.inputs[:] = bad.inputs[0]  # every batch contains the NaN
    with pytest.raises(NaNLossError, match="loss became nan at step 0") as info:
        run(train=bad)
    assert "step 0" in info.value.reason


def test_poly_lr():
    assert poly_lr(0.01, 0, 100, 0.9) == 0.01
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5**0.9)


def test_config_validation_and_hash():
    assert get_config("cpu").hash() != get_config("cpu").replace(channels=32).hash()
    assert get_config("cpu").hash() == get_config("cpu").replace(default_budget=7, default_reeval_seeds=5).hash()


def test_quick_start_defaults_come_from_the_config():
    """The quick start (random search on cpu) runs 2 evaluations and re-trains the best with 2 seeds,
    two at a time on 2 cores: about 10 minutes (README); other configs keep K = 3."""
    from strategies.objectives import resolve_objective

    cpu = resolve_objective("proxy", config="cpu")
    assert (cpu.default_budget, cpu.default_reeval_seeds) == (2, 2)
    assert resolve_objective("proxy", config="paper").default_reeval_seeds == 3
    # device type and precision are in the hash of a result: CPU fp32 and GPU bf16 never share one
    cfg = get_config("cpu")
    assert cfg.precision("cpu") == "fp32" and cfg.precision("cuda") == "bf16-autocast"
    assert len({cfg.hash(), cfg.hash("cpu"), cfg.hash("cuda"), cfg.replace(amp=False).hash("cuda")}) == 4
    assert cfg.replace(amp=False).hash("cuda") != cfg.hash("cuda")  # fp32 on a GPU is another precision
    assert get_config("full-cpu").end_to_end and get_config("cpu", full=True).backbone == "lite2"
    with pytest.raises(ValueError, match="unknown config"):
        get_config("gpu")
    with pytest.raises(ValueError, match="output_stride"):
        get_config("cpu").replace(output_stride=12)


def test_the_mirrored_images_flip_without_mirrored_features_is_an_error():
    import pytest

    with pytest.raises(ValueError, match="needs the cached features of the mirrored images"):
        run(CFG.replace(flip="mirrored-images"))
