"""``benchmarks.gpu_pack`` (packed worker processes vs one serial process) dry-run on the CPU,
and ``strategies.workers.auto_workers`` (what ``--workers`` means when not given)."""
from __future__ import annotations

import json

import pytest
import torch

from strategies import workers as W

GIB = 1024**3


def fake_cuda(monkeypatch, free_gib: list[float] | None, cores: int) -> None:
    """``free_gib``: free memory of each visible GPU (None: no CUDA)."""
    monkeypatch.setattr(W.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: free_gib is not None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(free_gib or []))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=0: (int(free_gib[i] * GIB), 80 * GIB))


def test_auto_workers_from_free_gpu_memory_and_cores(monkeypatch):
    fake_cuda(monkeypatch, None, 64)
    monkeypatch.setattr(W, "available_memory", lambda: 20 * GIB)
    lines = []
    assert W.auto_workers("proxy", "cpu", report=lines.append) == 6  # the CPU: floor(20 / 3) single-thread processes
    assert "bound by memory" in lines[0]
    fake_cuda(monkeypatch, None, 2)
    assert W.auto_workers("proxy", "cpu") == 2  # one per core
    assert W.auto_workers("full", "cpu") == 1  # the end-to-end task: one process
    assert W.auto_workers("synthetic", None) == 1
    fake_cuda(monkeypatch, None, 1)
    assert W.auto_workers("proxy", "cpu") == 1
    fake_cuda(monkeypatch, [40.0], 64)
    assert W.auto_workers("synthetic", None) == 1  # not a torch objective
    lines = []
    # floor(40 GiB * 0.8 / 3 GiB) = floor(10.67) = 10 (13 without the 0.8, 11 rounding up)
    assert W.auto_workers("proxy", "cpu", report=lines.append) == 10
    assert len(lines) == 1 and "workers: 10" in lines[0] and "GPU memory" in lines[0]
    assert W.auto_workers("proxy", "paper") == 5  # floor(32 / 6)
    assert W.auto_workers("proxy", None) == 10  # no config: the default, cpu
    assert W.auto_workers("full", "cpu") == 2  # floor(32 / 12)
    fake_cuda(monkeypatch, [140.0], 16)
    lines.clear()
    assert W.auto_workers("proxy", "cpu", report=lines.append) == 16  # 37 fit; one per core
    assert "CPU cores" in lines[0]
    fake_cuda(monkeypatch, [2.0], 16)
    assert W.auto_workers("proxy", "cpu") == 1  # floor(1.6 / 3) = 0 -> at least one
    fake_cuda(monkeypatch, [40.0, 20.0], 64)
    assert W.auto_workers("proxy", "cpu") == 10  # the fuller GPU: floor(16 / 3) = 5 each, x 2 GPUs


def test_run_cli_workers_flag_takes_auto():
    from strategies.run import parse_args

    assert parse_args(["--strategy", "random"]).workers is None  # auto
    assert parse_args(["--strategy", "random", "--workers", "auto"]).workers is None
    assert parse_args(["--strategy", "random", "--workers", "3"]).workers == 3
    with pytest.raises(SystemExit):
        parse_args(["--strategy", "random", "--workers", "0"])


def test_gpu_pack_cpu_dry_run(tmp_path, capsys, test_evaluator):  # the fixture builds the test cache
    from benchmarks.gpu_pack import main
    from proxy.config import get_config

    threads = torch.get_num_threads()
    rc = main(["--device", "cpu", "--config", "test", "--cells", "2", "--workers", "2", "--noise-cells", "2",
               "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert torch.get_num_threads() == threads  # the serial pass's thread count was put back
    data = json.loads((tmp_path / "gpu_pack-test.json").read_text())
    prov = data["provenance"]
    assert {"command", "config_hash", "torch", "device_name", "date", "git_commit"} <= set(prov)
    assert prov["config_hash"] == get_config("test").hash("cpu") and prov["torch"] == torch.__version__
    assert data["finished"] and data["workers"] == 2
    packed, serial, seed1 = (data["passes"][k] for k in ("packed", "serial", "seed1"))
    for p, n in ((packed, 2), (serial, 2), (seed1, 2)):
        assert p["complete"] == p["cells"] == n and p["failed"] == 0
        assert p["candidates_per_hour"] > 0 and p["devices"] == ["cpu"]
    assert packed["workers"] == 2 and packed["processes_used"] == 2 and serial["processes_used"] == 1
    assert packed["per_cell"].keys() == serial["per_cell"].keys()
    for key, s in serial["per_cell"].items():
        # CPU fp32 with the same torch thread count (1 here) is deterministic: bit-identical results
        assert packed["per_cell"][key]["miou"] == s["miou"]
        assert packed["per_cell"][key]["train_loss"] == s["train_loss"]
    c = data["comparison"]
    assert c["packed_vs_serial_mean"] == 0.0 and c["packed_equals_serial"] == 2 and c["seed_noise_cells"] == 2
    last = [line for line in out.splitlines() if line.startswith("packed: ")][-1]
    assert "candidates/hour, serial: " in last and "|packed - serial| mIOU mean 0.00000" in last


def test_run_cli_auto_workers_on_a_gpu_is_printed_and_capped_by_the_budget(tmp_path, monkeypatch, capsys):
    """The CLI's auto path as on a CUDA machine (faked): the chosen N, printed, at most the budget."""
    from strategies.run import main

    monkeypatch.setattr(W, "gpu_count", lambda spec: 1)
    monkeypatch.setattr(W, "auto_workers_reason", lambda spec, config: (8, "workers: 8 (auto, faked)"))
    rc = main(["--strategy", "random", "--objective", "synthetic", "--budget", "2", "--out-dir", str(tmp_path), "-q",
               "--poll", "0.2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "workers: 8 (auto, faked); 2 for a budget of 2" in out and ", 2 workers" in out
    assert "2/2 trials used (2 complete, 0 failed)" in out


def test_gpu_pack_cuda_paths_without_a_gpu(monkeypatch, tmp_path, capsys):
    """--device cuda on a machine without one: one line, status 2; the packed pass's free-memory
    sampler (CUDA only) with mem_get_info faked."""
    import time

    from benchmarks.gpu_pack import MemorySampler, main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a GPU" in err[0]
    free = iter([50 * GIB, 40 * GIB, 30 * GIB, 45 * GIB])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=None: (next(free, 45 * GIB), 80 * GIB))
    with MemorySampler() as mem:
        time.sleep(1.0)
    assert mem.before == 50 * GIB and mem.lowest == 30 * GIB
