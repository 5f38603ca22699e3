"""Synthetic datasets drawn from the generator optlab passes in: blobs and the spiral."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from optlab import DatasetSource, Params, RawDataset

__all__ = ["Blobs", "BlobsParams", "Spiral", "SpiralParams"]


class BlobsParams(Params):
    """Gaussian clusters, one per class, around centers drawn uniformly in [-10, 10]^F."""

    n_samples: int = Field(300, ge=2, le=10_000_000, description="Number of examples in all.")
    n_features: int = Field(2, ge=1, le=100_000, description="Number of features F.")
    n_classes: int = Field(3, ge=2, le=10_000, description="Number of classes (clusters) C.")
    spread: float = Field(
        1.0, gt=0, le=1_000, description="Standard deviation of each cluster around its center."
    )


class Blobs(DatasetSource):
    """Isotropic Gaussian blobs: easy, linearly separable when ``spread`` is small."""

    def __init__(self, params: BlobsParams) -> None:
        self.params = params

    def load(self, rng: np.random.Generator) -> RawDataset:
        p = self.params
        centers = rng.uniform(-10.0, 10.0, size=(p.n_classes, p.n_features))
        y = rng.permutation(np.arange(p.n_samples, dtype=np.int64) % p.n_classes)
        X = centers[y] + p.spread * rng.standard_normal((p.n_samples, p.n_features))
        return RawDataset(
            X=X,
            y=y,
            classes=[f"blob{c}" for c in range(p.n_classes)],
            source=f"blobs(n_samples={p.n_samples}, n_features={p.n_features}, "
            f"n_classes={p.n_classes}, spread={p.spread})",
        )


class SpiralParams(Params):
    """CS231n's spiral: C arms in the plane, not linearly separable."""

    n_classes: int = Field(3, ge=2, le=1_000, description="Number of arms (classes) C.")
    n_points: int = Field(100, ge=2, le=1_000_000, description="Points per class.")
    noise: float = Field(
        0.2, ge=0, le=10, description="Standard deviation of the angular noise (radians)."
    )


class Spiral(DatasetSource):
    """Point ``i`` of arm ``j``: radius ``r = i/(n-1)``, angle ``t = 4j + 4r + noise``,
    position ``(r sin t, r cos t)`` (the CS231n neural-network case study)."""

    def __init__(self, params: SpiralParams) -> None:
        self.params = params

    def load(self, rng: np.random.Generator) -> RawDataset:
        p = self.params
        r = np.tile(np.linspace(0.0, 1.0, p.n_points), p.n_classes)
        y = np.repeat(np.arange(p.n_classes, dtype=np.int64), p.n_points)
        t = 4.0 * y + 4.0 * r + p.noise * rng.standard_normal(r.shape[0])
        X = np.column_stack([r * np.sin(t), r * np.cos(t)])
        return RawDataset(
            X=X,
            y=y,
            classes=[f"arm{c}" for c in range(p.n_classes)],
            source=f"spiral(n_classes={p.n_classes}, n_points={p.n_points}, noise={p.noise})",
        )
