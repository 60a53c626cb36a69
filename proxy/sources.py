"""Turn a ``--dataset`` spec into (train, val, test) datasets.

``scenes`` (the embedded default, preset from the config), ``scenes:PRESET``,
``voc:PATH`` (Pascal-VOC folder) or ``cityscapes:PATH`` (Cityscapes folder). Real
images are shrunk and padded (label 255) to one size, as DeepLab evaluates, so that
their features stack into one cache array. Train trains the head, val is the only signal
a search sees, test is for reporting only. A folder's test split is its own where it has
labelled masks, else the half of its val split picked by a hash of each image id
(``proxy.folders.folder_splits``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

DEFAULT_REAL_SIZE = (513, 513)


def load_datasets(spec: Optional[str], scenes_preset: str = "default", cache_dir: "str | Path | None" = None):
    """``(train, val, test)`` datasets for a ``--dataset`` spec (module docstring)."""
    from .scenes import build_scenes

    spec = (spec or "scenes").strip()
    kind, _, arg = spec.partition(":")
    if kind == "scenes":
        return build_scenes(arg or scenes_preset, cache_dir)
    if kind in ("voc", "cityscapes"):
        if not arg:
            raise ValueError(f"dataset {spec!r} needs a folder: {kind}:PATH")
        from .folders import folder_splits

        return folder_splits(kind, arg, size=DEFAULT_REAL_SIZE, mode="pad")
    raise ValueError(f"unknown dataset {spec!r}; expected scenes[:PRESET], voc:PATH or cityscapes:PATH")
