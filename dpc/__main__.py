"""``python -m dpc describe CELL`` and ``python -m dpc sample -n 5 --seed 0``."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .cost import cell_cost
from .genome import FEATURES, Genome, space_size
from .mutation import sample_genome
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpc", description="Inspect the DPC search space.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("describe", help="branches, params and FLOPs of a cell")
    d.add_argument("cell", help=f"zoo name ({', '.join(ZOO)}), genome string, JSON text or JSON file")
    d.add_argument("--size", type=int, nargs=2, default=(65, 129), metavar=("H", "W"), help="feature map size (default: 65 129, the paper's Table 1)")
    d.add_argument("--in-channels", type=int, default=320, help="backbone channels (default 320, EfficientNet-Lite0 / MobileNet-v2)")
    d.add_argument("--channels", type=int, default=256)
    d.add_argument("--concat-channels", type=int, default=256)
    s = sub.add_parser("sample", help="print uniformly random genomes")
    s.add_argument("-n", type=int, default=5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--branches", type=int, default=5)
    s.add_argument("--format", choices=("string", "json", "vector"), default="string")
    sp = sub.add_parser("space", help="size of the search space")
    sp.add_argument("--branches", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        if args.command == "describe":
            if min(args.size) < 1 or min(args.in_channels, args.channels, args.concat_channels) < 1:
                parser.error("sizes and channel counts must be positive")
            genome = load_cell(args.cell)
            print(describe(genome, args.in_channels, *args.size, args.channels, args.concat_channels))
        elif args.command == "sample":
            if args.n < 0 or args.branches < 1:
                parser.error("-n must be >= 0 and --branches >= 1")
            rng = np.random.default_rng(args.seed)
            for _ in range(args.n):
                g = sample_genome(rng, args.branches)
                print({"string": str(g), "json": g.to_json(), "vector": " ".join(map(str, g.to_vector()))}[args.format])
        else:
            print(f"{space_size(args.branches):,} genomes with {args.branches} branches (B! x 81^B)")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
