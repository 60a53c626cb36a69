"""``python -m dpc describe CELL``, ``python -m dpc sample -n 5 --seed 0``, ``python -m dpc space``.

Every argument is checked before any work: numbers are ASCII integers within the limits below
(stated in each error), cells go through the genome's own validation.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Callable, NoReturn

import numpy as np

from . import ops
from .cost import cell_cost
from .genome import FEATURES, MAX_BRANCHES, Genome, space_size
from .mutation import sample_genome
from .ops import brief, printable
from .zoo import ZOO, load_cell


def describe(genome: Genome, in_channels: int, height: int, width: int, channels: int, concat: int) -> str:
    lines = [f"cell      {genome}", f"hash      {genome.canonical_hash()}  (canonical: {genome.canonical()})", ""]
    lines.append(f"{'branch':>6}  {'input':>5}  {'op':<14} {'params':>10} {'MAdds':>14}")
    for b, br in enumerate(genome.branches):
        one = Genome(((genome.branches[b].__class__(FEATURES, br.op)),))
        cin = in_channels if br.input == FEATURES else channels
        cost = cell_cost(one, cin, height, width, channels, concat)
        inp = "F" if br.input == FEATURES else str(br.input)
        lines.append(f"{b:>6}  {inp:>5}  {br.op.name:<14} {cost.params - 2 * concat - channels * concat:>10,} {cost.paper_madds:>14,}")
    total = cell_cost(genome, in_channels, height, width, channels, concat)
    lines += [
        "",
        f"feature map {height}x{width}x{in_channels}, {channels} channels per op, projection to {concat}",
        f"params    {total.params:,} trainable (Table-1 style, conv weights without BN/projection: {total.paper_params:,})",
        f"FLOPs     {total.flops:,} ({total.flops / 1e9:.3f} GFLOPs; Table-1 style MAdds {total.paper_madds / 1e9:.3f} B)",
        f"json      {genome.to_json()}",
    ]
    return "\n".join(lines)


PROG = "python -m dpc"
MAX_SIDE = 100_000  # feature map height/width
MAX_CHANNELS = 100_000
MAX_SAMPLES = 100_000  # -n of sample
MAX_SAMPLED_BRANCHES = 100_000  # -n x --branches of sample (about 1 s)
MAX_SEED = 2**64 - 1


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments -> one line on stderr and exit status 2, not usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {printable(message)} (see --help)\n")


def bounded_int(lo: int, hi: int, what: str, hi_text: str | None = None) -> Callable[[str], int]:
    """An argparse type: an ASCII decimal integer in [lo, hi], else one message naming the limits."""

    def parse(text: str) -> int:
        t = text.strip()
        if not re.fullmatch(r"[+-]?[0-9]{1,30}", t, re.ASCII) or not lo <= int(t) <= hi:
            raise argparse.ArgumentTypeError(
                f"expected {what}, an integer in {lo:,}..{hi_text or f'{hi:,}'}, got {brief(text, 40)}")
        return int(t)

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def _space_line(branches: int) -> str:
    size = space_size(branches)
    formula = f"B! x {ops.NUM_OPS}^B"
    if size < 10**30:
        return f"{size:,} genomes with {branches} branches ({formula})"
    log10 = (math.lgamma(branches + 1) + branches * math.log(ops.NUM_OPS)) / math.log(10)
    exponent = math.floor(log10)
    return f"about {10 ** (log10 - exponent):.3f}e{exponent} genomes with {branches} branches ({formula})"


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Inspect the DPC search space.",
                           epilog=f"limits: 1..{MAX_BRANCHES} branches, feature sides 1..{MAX_SIDE:,}, channels "
                           f"1..{MAX_CHANNELS:,}, -n 0..{MAX_SAMPLES:,} (and -n x --branches <= {MAX_SAMPLED_BRANCHES:,}), "
                           f"seeds 0..2^64-1")
    sub = parser.add_subparsers(dest="command", required=True)
    side = bounded_int(1, MAX_SIDE, "a feature map side")
    chans = bounded_int(1, MAX_CHANNELS, "a channel count")
    branches = bounded_int(1, MAX_BRANCHES, "a number of branches")
    d = sub.add_parser("describe", help="branches, params and FLOPs of a cell")
    d.add_argument("cell", help=f"zoo name ({', '.join(ZOO)}), genome string, JSON text or JSON file")
    d.add_argument("--size", type=side, nargs=2, default=(65, 129), metavar=("H", "W"), help="feature map size (default: 65 129, the paper's Table 1)")
    d.add_argument("--in-channels", type=chans, default=320, help="backbone channels (default 320, EfficientNet-Lite0 / MobileNet-v2)")
    d.add_argument("--channels", type=chans, default=256)
    d.add_argument("--concat-channels", type=chans, default=256)
    s = sub.add_parser("sample", help="print uniformly random genomes")
    s.add_argument("-n", type=bounded_int(0, MAX_SAMPLES, "a number of genomes"), default=5)
    s.add_argument("--seed", type=bounded_int(0, MAX_SEED, "a seed", "2^64-1"), default=0)
    s.add_argument("--branches", type=branches, default=5)
    s.add_argument("--format", choices=("string", "json", "vector"), default="string")
    sp = sub.add_parser("space", help="size of the search space")
    sp.add_argument("--branches", type=branches, default=5)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The CLI; every bad input is one line ``python -m dpc: error: ...`` on stderr and status 2
    (SystemExit(2) from argument parsing, a return value of 2 from reading the cell)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "describe":
            genome = load_cell(args.cell)
            print(describe(genome, args.in_channels, *args.size, args.channels, args.concat_channels))
        elif args.command == "sample":
            if args.n * args.branches > MAX_SAMPLED_BRANCHES:
                parser.error(f"-n x --branches must be <= {MAX_SAMPLED_BRANCHES:,}, got {args.n} x {args.branches}")
            rng = np.random.default_rng(args.seed)
            for _ in range(args.n):
                g = sample_genome(rng, args.branches)
                print({"string": str(g), "json": g.to_json(), "vector": " ".join(map(str, g.to_vector()))}[args.format])
        else:
            print(_space_line(args.branches))
    except ValueError as e:  # GenomeError, or a cell file that cannot be read
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
