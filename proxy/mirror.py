"""A dataset seen in a mirror: the same images and masks flipped left to right.

A horizontal flip of a cached feature map is not the feature map of the flipped image (the
backbone's kernels are not symmetric), so the proxy cannot flip cached features and call it the
full task's image flip. Its ``mirrored-images`` flip caches this dataset's features (its own
cache key) and trains on them, with the flipped labels, where a coin says flip.
"""
from __future__ import annotations

import numpy as np


class MirroredDataset:
    def __init__(self, dataset) -> None:
        self.base = dataset
        self.name = f"{dataset.name}-mirrored"
        self.num_classes = dataset.num_classes
        self.class_names = list(dataset.class_names)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask = self.base[i]
        return np.ascontiguousarray(np.asarray(image)[:, ::-1]), np.ascontiguousarray(np.asarray(mask)[:, ::-1])
