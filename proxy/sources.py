"""Turn a ``--dataset`` spec into (train, val) datasets.

``scenes`` (the embedded default, preset from the config), ``scenes:PRESET``,
``voc:PATH`` (Pascal-VOC folder) or ``cityscapes:PATH`` (Cityscapes folder). Real
images are shrunk and padded (label 255) to one size, as DeepLab evaluates, so that
their features stack into one cache array.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

DEFAULT_REAL_SIZE = (513, 513)


def load_datasets(spec: Optional[str], scenes_preset: str = "default", cache_dir: "str | Path | None" = None):
    from .scenes import build_scenes

    spec = (spec or "scenes").strip()
    kind, _, arg = spec.partition(":")
    if kind == "scenes":
        return build_scenes(arg or scenes_preset, cache_dir)
    if kind in ("voc", "cityscapes"):
        if not arg:
            raise ValueError(f"dataset {spec!r} needs a folder: {kind}:PATH")
        from .folders import CityscapesFolder, VOCFolder

        cls = VOCFolder if kind == "voc" else CityscapesFolder
        return tuple(cls(arg, split=split, size=DEFAULT_REAL_SIZE, mode="pad") for split in ("train", "val"))
    raise ValueError(f"unknown dataset {spec!r}; expected scenes[:PRESET], voc:PATH or cityscapes:PATH")
