"""What each op of the cell and whole proxy steps cost on this CPU, fast vs reference kernels, against a roofline.

    python -m benchmarks.op_cost [--quick] [--repeats N] [--threads N] [--input-grad]

Why: a speed-up only says the new kernels (``dpc.kernels``) beat the ``nn`` ops; the roofline says
how far either still is from what this machine can do, so it shows which ops are worth more work.

1. the machine: GEMM rate (median GFLOP/s of a 1024x1024 fp32 matmul) and copy bandwidth
   (bytes read + written by cloning a 64 MB fp32 tensor, median);
2. per op (``dpc.cell.build_op``, train mode) at the ``cpu`` shape (batch 8, 320x33x33 in, 64 out)
   and, unless ``--quick``, the ``paper`` shape (256 out): median ms of one forward + backward
   (backward with a fixed gradient of ones) on a fixed input that needs no gradient (a branch
   reading the backbone features; ``--input-grad``: one reading another branch), fast and reference
   kernels alternating on the same module and input;
3. whole training steps at the ``cpu`` config (forward, loss on the logits upsampled to 129x129,
   backward, Adam step) for zoo cells and uniform random cells.

Roofline = max(FLOPs / GEMM rate, bytes / copy bandwidth), both counted on the REFERENCE
formulation, so that both kernel sets are judged by one yardstick. FLOPs: ``FlopCounterMode``
with a groups-aware convolution backward (torch's formula counts a depthwise weight gradient as a
dense conv, ``groups`` = 320 times too many). Bytes: the tensor inputs and outputs of every aten
op run, views skipped: the traffic of an unfused run where nothing stays in cache between ops.
The last line is ``worst op / 1x1 conv`` (the slowest fast op at the cpu shape over the fast 1x1).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from dpc import kernels
from dpc.cell import build_op
from dpc.genome import Genome
from dpc.mutation import sample_genome
from dpc.ops import op_from_name
from dpc.zoo import zoo_cell
from proxy.config import PROXY_CONFIGS, EvalConfig
from proxy.metrics import IGNORE_INDEX
from proxy.train import SegmentationHead

aten = torch.ops.aten
MODES = ("fast", "reference")
NUM_CLASSES = 11
ALL_OPS = ("conv1x1", "sep3x3_1x1", "sep3x3_3x3", "sep3x3_6x6", "sep3x3_12x12", "sep3x3_21x21", "sep3x3_1x21",
           "sep3x3_21x1", "sep3x3_6x18", "pool_1x1", "pool_2x2", "pool_4x4", "pool_8x8", "pool_1x8", "pool_8x1", "pool_2x4")
QUICK_OPS = ("conv1x1", "sep3x3_1x1", "sep3x3_6x6", "sep3x3_21x21", "sep3x3_1x21", "pool_1x1", "pool_2x2", "pool_4x4", "pool_8x8")


@dataclass(frozen=True)
class Machine:
    gflops: float  # GEMM rate
    gbps: float  # copy bandwidth, bytes read + written


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    cin: int
    hw: int
    cout: int

    def __str__(self) -> str:
        return f"{self.batch}x{self.cin}x{self.hw}x{self.hw}->{self.cout}"


SHAPES = {"cpu": Shape("cpu", 8, 320, 33, 64), "paper": Shape("paper", 8, 320, 33, 256)}


@dataclass
class Row:
    """One op or step: medians of fast and reference, and the reference's counted work."""

    name: str
    shape: str
    fast_ms: float
    ref_ms: float
    flops: int
    nbytes: int
    roof_ms: float

    @property
    def speedup(self) -> float:
        return self.ref_ms / self.fast_ms

    @property
    def fast_roof(self) -> float:
        return self.fast_ms / self.roof_ms


# -- timing ----------------------------------------------------------------------------------------
def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    return paired_ms({"": fn}, repeats, warmup)[""]


def paired_ms(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median ms of each function, taking turns every repeat so that a noisy neighbour (another
    process on a core) slows all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def under(mode: str, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with ``mode``'s kernels."""
    def run():
        with kernels.using(mode):
            return fn()
    return run


def load_note() -> str:
    """The load when the run started: with another busy process on one of 2 cores, a 2-thread
    torch stalls at every parallel region (steps 3-50x slower) and the tables mean little."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def measure_machine(repeats: int, copy_mb: int = 64) -> tuple[Machine, float]:
    """(GEMM rate and clone bandwidth, bandwidth of a copy into a preallocated tensor): a clone
    also pays the page faults of a fresh allocation, as the ops' own outputs may."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    gflops = 2 * 1024**3 / median_ms(lambda: a @ b, 4 * repeats) / 1e6
    src = torch.randn(copy_mb * 2**20 // 4)
    dst = torch.empty_like(src)
    moved = 2 * src.numel() * src.element_size()
    clone_gbps = moved / median_ms(src.clone, repeats) / 1e6
    copy_gbps = moved / median_ms(lambda: dst.copy_(src), repeats) / 1e6
    return Machine(gflops, clone_gbps), copy_gbps


# -- counting ---------------------------------------------------------------------------------------
def conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                       _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """Each requested gradient (input, weight) costs one forward pass: 2 x (output points of the
    forward conv) x (the weight's taps per output channel), which ``w_shape[1]`` = in / groups
    makes right for grouped and depthwise convs."""
    points = 1
    for s in (x_shape if transposed else grad_out_shape):
        points *= s
    taps = 1
    for s in w_shape[1:]:
        taps *= s
    return 2 * points * taps * (int(output_mask[0]) + int(output_mask[1]))


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False, custom_mapping={aten.convolution_backward: conv_backward_flop}) as counter:
        fn()
    return counter.get_total_flops()


# ops that move no data: views and aliases (also those whose schema does not say so), allocations
_FREE = {aten._unsafe_view, aten.detach, aten.lift_fresh, aten.alias, aten._reshape_alias, aten.empty,
         aten.empty_like, aten.empty_strided, aten.new_empty, aten.new_empty_strided, aten.empty_permuted}


def tensor_bytes(t: torch.Tensor) -> int:
    """The bytes ``t`` spans: its elements, or its storage when smaller (an expanded tensor)."""
    return min(t.numel() * t.element_size(), t.untyped_storage().nbytes())


class ByteCounter(TorchDispatchMode):
    """Sums the bytes of the tensor inputs and outputs of every aten op that moves data."""

    def __init__(self):
        super().__init__()
        self.nbytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not (func.is_view or func.overloadpacket in _FREE):
            tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
            self.nbytes += sum(tensor_bytes(t) for t in tensors)
        return out


def count_bytes(fn: Callable[[], object]) -> int:
    with ByteCounter() as counter:
        fn()
    return counter.nbytes


def roofline_ms(flops: int, nbytes: int, machine: Machine) -> float:
    return max(flops / machine.gflops, nbytes / machine.gbps) / 1e6


def measure(name: str, shape: str, fn: Callable[[], object], machine: Machine, repeats: int) -> Row:
    """Time ``fn`` with both kernel sets; count its work on the reference."""
    ms = paired_ms({m: under(m, fn) for m in MODES}, repeats)
    flops, nbytes = count_flops(under("reference", fn)), count_bytes(under("reference", fn))
    return Row(name, shape, ms["fast"], ms["reference"], flops, nbytes, roofline_ms(flops, nbytes, machine))


# -- ops --------------------------------------------------------------------------------------------
def op_pass(op_name: str, shape: Shape, input_grad: bool = False) -> Callable[[], None]:
    """One forward + backward of the op's module on a fixed input, grads cleared first."""
    torch.manual_seed(0)
    module = build_op(op_from_name(op_name), shape.cin, shape.cout).train()
    x = torch.randn(shape.batch, shape.cin, shape.hw, shape.hw, requires_grad=input_grad)
    grad = torch.ones(shape.batch, shape.cout, shape.hw, shape.hw)
    params = [x, *module.parameters()]

    def run():
        for p in params:
            p.grad = None
        module(x).backward(grad)

    return run


def op_rows(names: Iterable[str], shape: Shape, machine: Machine, repeats: int, input_grad: bool = False) -> list[Row]:
    """``conv1x1`` first (added when missing): every row is also judged against it."""
    names = ["conv1x1", *(n for n in names if n != "conv1x1")]
    return [measure(n, str(shape), op_pass(n, shape, input_grad), machine, repeats) for n in names]


def worst_vs_conv1x1(rows: list[Row]) -> float:
    conv = next(r for r in rows if r.name == "conv1x1")
    return max(r.fast_ms for r in rows) / conv.fast_ms


# -- training steps ---------------------------------------------------------------------------------
def make_optimizer(cfg: EvalConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_train_step(model: torch.nn.Module, cfg: EvalConfig, next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]]):
    """One proxy training step as ``proxy.train`` runs it: stored features cast to float, logits
    upsampled to the (subsampled) labels, cross entropy, backward, optimizer step."""
    optimizer = make_optimizer(cfg, model.parameters())

    def step():
        x, y = next_batch()
        logits = model(x.float())
        loss = F.cross_entropy(kernels.resize_bilinear(logits.float(), tuple(y.shape[-2:])), y.long(), ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def step_row(label: str, genome: Genome, cfg: EvalConfig, shape: Shape, loss_hw: int, machine: Machine, repeats: int) -> Row:
    """A training step of ``genome``'s head on fixed fp16 features and labels."""
    torch.manual_seed(0)
    model = SegmentationHead(genome, shape.cin, NUM_CLASSES, cfg).train()
    x = torch.randn(cfg.batch_size, shape.cin, shape.hw, shape.hw).half()
    y = torch.randint(0, NUM_CLASSES, (cfg.batch_size, loss_hw, loss_hw), dtype=torch.uint8)
    return measure(label, cfg.name, make_train_step(model, cfg, lambda: (x, y)), machine, repeats)


def step_cells(n_random: int = 3) -> list[tuple[str, Genome]]:
    rng = np.random.default_rng(0)
    cells = [(name, zoo_cell(name)) for name in ("weak", "aspp", "top1_cityscapes")]
    return cells + [(str(g), g) for g in (sample_genome(rng, 5) for _ in range(n_random))]


# -- printing ---------------------------------------------------------------------------------------
def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")


def op_table(rows: list[Row]) -> list[list]:
    out = []
    for r in rows:
        conv = next(c for c in rows if c.name == "conv1x1" and c.shape == r.shape)
        out.append([r.name, r.shape, f"{r.fast_ms:.2f}", f"{r.ref_ms:.2f}", f"{r.speedup:.2f}", f"{r.roof_ms:.2f}",
                    f"{r.fast_roof:.1f}", f"{r.fast_ms / conv.fast_ms:.2f}", f"{r.flops / 1e9:.3f}", f"{r.nbytes / 2**20:.0f}"])
    return out


def step_table(rows: list[Row]) -> list[list]:
    return [[r.name, f"{r.fast_ms:.0f}", f"{r.ref_ms:.0f}", f"{r.speedup:.2f}", f"{r.roof_ms:.1f}", f"{r.fast_roof:.1f}",
             f"{r.flops / 1e9:.2f}", f"{r.nbytes / 2**20:.0f}"] for r in rows]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.op_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a subset of the ops, the cpu shape only")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per median (default 5, quick 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--input-grad", action="store_true", help="ops read an input that needs a gradient (a branch reading a branch)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {repeats} repeats, {load_note()}")

    machine, copy_gbps = measure_machine(repeats)
    print(f"GEMM 1024x1024 fp32: {machine.gflops:.1f} GFLOP/s; copy bandwidth (clone of 64 MB, read + written): "
          f"{machine.gbps:.1f} GB/s (into a preallocated tensor: {copy_gbps:.1f} GB/s)")

    ops_rows: list[Row] = []
    for shape in [SHAPES["cpu"]] + ([] if args.quick else [SHAPES["paper"]]):
        ops_rows += op_rows(QUICK_OPS if args.quick else ALL_OPS, shape, machine, repeats, args.input_grad)
    table(f"Ops: forward + backward, input {'with' if args.input_grad else 'without'} gradient (reference FLOPs and bytes)",
          ["op", "shape", "fast ms", "reference ms", "speed-up", "roofline ms", "fast/roofline", "fast / 1x1 conv",
           "GFLOP", "MB moved"], op_table(ops_rows))

    cfg, shape = PROXY_CONFIGS["cpu"], SHAPES["cpu"]
    loss_hw = (513 - 1) // cfg.loss_stride + 1
    steps = [step_row(label, g, cfg, shape, loss_hw, machine, repeats) for label, g in step_cells()]
    table(f"Training steps, cpu config (batch {cfg.batch_size}, {cfg.channels} channels, loss at {loss_hw}x{loss_hw}, {cfg.optimizer})",
          ["cell", "fast ms", "reference ms", "speed-up", "roofline ms", "fast/roofline", "GFLOP", "MB moved"], step_table(steps))

    print(f"\nworst step / roofline: {max(r.fast_roof for r in steps):.2f}")
    print(f"worst op / 1x1 conv: {worst_vs_conv1x1([r for r in ops_rows if r.shape == str(SHAPES['cpu'])]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
