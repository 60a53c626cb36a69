"""ProxyEvaluator and FullEvaluator on the `test` config, and the evaluate CLI."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from dpc.cost import cell_cost
from dpc.genome import Genome
from dpc.zoo import zoo_cell
from proxy import evaluator as evaluator_module
from proxy.config import get_config
from proxy.errors import EvaluationError, GPUOutOfMemoryError, NaNLossError
from proxy.sources import load_datasets


def test_result_fields(test_evaluator):
    g = zoo_cell("top1")
    r = test_evaluator.evaluate(g, seed=0)
    cfg = get_config("test")
    assert 0 <= r.miou <= 1 and len(r.per_class_iou) == 11 == test_evaluator.num_classes
    assert r.iterations == cfg.iterations and r.seed == 0 and r.device == "cpu"
    assert r.config == "test" and r.config_hash == cfg.hash("cpu") and r.genome == str(g)
    h, w = test_evaluator.feature_size
    assert r.params == cell_cost(g, 320, h, w, cfg.channels, cfg.concat_channels).params
    assert r.flops == cell_cost(g, 320, h, w, cfg.channels, cfg.concat_channels).flops
    assert test_evaluator.in_channels == 320 and r.train_seconds > 0
    d = r.to_dict()
    assert d["miou"] == r.miou and isinstance(d["per_class_iou"], list)
    from proxy.scenes import SCENE_PRESETS, scene_key

    key = scene_key(SCENE_PRESETS["test"])  # the data it saw: the three splits of the test scene set
    assert d["data"] == f"scenes-{key}-train,scenes-{key}-val,scenes-{key}-test"


def test_reproducible_for_a_seed(test_evaluator):
    g = Genome.parse("F:sep3x3_3x3 0:pool_2x2 F:conv1x1")
    a, b = test_evaluator.evaluate(g, seed=5), test_evaluator.evaluate(g, seed=5)
    assert a.miou == b.miou and a.per_class_iou == b.per_class_iou and a.train_loss == b.train_loss
    assert test_evaluator.evaluate(g, seed=6).train_loss != a.train_loss


def test_callback_gets_intermediate_miou(cache_dir):
    ev = evaluator_module.ProxyEvaluator(get_config("test").replace(eval_every=5), cache_dir=cache_dir, device="cpu")
    seen = []
    ev.evaluate(zoo_cell("aspp"), callback=lambda step, miou: seen.append(step))
    assert seen == [5, 10, 15, 20]


def test_nan_loss_is_a_specific_error_and_evaluator_stays_usable(test_evaluator):
    inputs = test_evaluator._train.inputs
    saved = inputs.clone()
    try:
        inputs[:, 0, 0, 0] = float("nan")
        with pytest.raises(NaNLossError) as info:
            test_evaluator.evaluate(zoo_cell("aspp"))
        assert isinstance(info.value, EvaluationError) and "loss became nan" in info.value.reason
    finally:
        inputs.copy_(saved)
    assert np.isfinite(test_evaluator.evaluate(zoo_cell("aspp")).miou)


def test_out_of_memory_is_a_specific_error(test_evaluator, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(evaluator_module, "train_and_evaluate", oom)
    with pytest.raises(GPUOutOfMemoryError, match="out of memory on cpu with batch 4: CUDA out of memory"):
        test_evaluator.evaluate(zoo_cell("aspp"))
    monkeypatch.undo()
    assert test_evaluator.evaluate(zoo_cell("weak")).iterations == get_config("test").iterations


def test_full_evaluator_fine_tunes_a_fresh_backbone_each_time(cache_dir):
    from proxy.full import FullEvaluator

    ev = FullEvaluator("test", cache_dir=cache_dir, device="cpu").prepare()
    assert ev.backbone_name == "lite2" and ev.in_channels == 352 and ev.config.end_to_end
    before = {k: v.clone() for k, v in ev._backbone.state_dict().items()}
    a = ev.evaluate(zoo_cell("aspp"), seed=1)
    changed = any(not torch.equal(before[k], v) for k, v in ev._backbone.state_dict().items())
    assert changed  # the backbone was trained end to end
    b = ev.evaluate(zoo_cell("aspp"), seed=1)
    assert a.train_loss == b.train_loss  # ... and reset before the next evaluation
    assert a.config == "full-test" and 0 <= a.miou <= 1


def test_frozen_full_task_trains_on_cached_lite2_features_at_full_resolution(cache_dir):
    from proxy.evaluator import ProxyEvaluator
    from proxy.full import FullEvaluator, full_evaluator

    assert isinstance(full_evaluator("test", cache_dir=cache_dir), FullEvaluator)
    ev = full_evaluator("test-frozen", cache_dir=cache_dir, device="cpu")
    cfg = get_config("test-frozen", full=True)
    assert isinstance(ev, ProxyEvaluator) and not cfg.end_to_end and cfg.loss_stride == cfg.eval_stride == 1
    ev.prepare()
    assert ev.in_channels == 352  # Lite2's features, not the proxy's Lite0
    assert ev._train.mirrored is not None and ev._train.mirrored.shape == ev._train.inputs.shape
    r = ev.evaluate(zoo_cell("aspp"), seed=0)
    assert r.config == "full-test-frozen" and 0 <= r.miou <= 1 and 0 <= r.test_miou <= 1
    assert r.config_hash == cfg.hash("cpu") != get_config("test").hash("cpu")
    assert ev.evaluate(zoo_cell("aspp"), seed=0).miou == r.miou


def test_full_objective_on_a_frozen_config_reaches_the_cached_feature_trainer(cache_dir):
    from strategies.objectives import resolve_objective

    obj = resolve_objective("full", config="test-frozen", cache_dir=cache_dir)
    assert obj.name == "full-test-frozen" and obj.steps == get_config("test-frozen", full=True).iterations
    r = obj.fn(zoo_cell("weak"), seed=1)
    assert r.config == "full-test-frozen" and r.config_hash == get_config("test-frozen", full=True).hash("cpu")


def test_bad_dataset_specs(cache_dir):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_datasets("imagenet", cache_dir=cache_dir)
    with pytest.raises(ValueError, match="needs a folder"):
        load_datasets("voc:", cache_dir=cache_dir)
    with pytest.raises(FileNotFoundError):
        load_datasets("voc:/nonexistent/VOC", cache_dir=cache_dir)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "proxy.evaluate", *args], capture_output=True, text=True, timeout=300)


def test_cli_prints_result_table():
    out = run_cli("weak", "--config", "test", "--seed", "2")
    assert out.returncode == 0, out.stderr
    assert "F:conv1x1 F:conv1x1" in out.stdout and "mIOU" in out.stdout and "seed 2" in out.stdout
    bad = run_cli("F:sep3x3_5x5", "--config", "test")
    assert bad.returncode == 2 and "unknown operation" in bad.stderr and bad.stderr.strip().count("\n") == 0
    bad = run_cli("aspp", "--config", "huge")
    assert bad.returncode == 2 and "unknown config" in bad.stderr


def test_build_caches_leaves_the_data_to_the_workers(cache_dir, monkeypatch):
    """The parent of several workers builds the caches but holds no split (on a GPU: no extra copy)."""
    from proxy import cache as cache_module
    from strategies.objectives import resolve_objective

    built = []
    real = cache_module.load_or_build
    monkeypatch.setattr(cache_module, "load_or_build", lambda ds, **kw: built.append(ds.name) or real(ds, **kw))
    ev = evaluator_module.ProxyEvaluator("test", cache_dir=cache_dir, device="cpu").build_caches()
    assert ev._train is None and ev._val is None and len(built) == 3
    obj = resolve_objective("proxy", config="test", cache_dir=cache_dir)
    calls = []
    obj.prepare_fn, obj.build_fn = (lambda: calls.append("prepare")), (lambda: calls.append("build"))
    obj.build()
    obj.build_fn = None
    obj.build()  # without a builder, build falls back to prepare
    assert calls == ["build", "prepare"]
