"""How familiar an image is to a model, measured in the model's own representation.

A class-conditional Gaussian with one shared covariance (Lee et al., NeurIPS 2018, "A simple
unified framework for detecting out-of-distribution samples") over the penultimate features of a
task model (the input of its last Linear layer), fitted on the model's training images. An image's
distance is the smallest Mahalanobis distance to a class mean; its `familiarity percentile` is where
that distance falls among the training images' own distances (0.5: as typical as the median
training image, 1.0: farther than all of them).

Two rules read it: the input gate (an image farther than almost every in-distribution image is not
what these models can read) and the referral rule (the farther from the training data, the more
often the model is wrong: measured in `core.inference.referral`).

Features are log1p-compressed (post-ReLU activations are heavy-tailed) and the covariance is
shrunk (Ledoit-Wolf): a few hundred images per class fit 256 dimensions stably.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.cards import ModelCard
from model_zoo import sha256_file

FILE = "feature_density.pt"  # beside model.pt; its sha256 is in the card's "feature_density"
GATE_FILE = "gate_density.pt"  # the input gate's density (card key "gate")


class UnverifiedFile(ValueError):
    """A file a version's card declares is missing or does not match its sha256."""


@dataclass
class FeatureDensity:
    means: np.ndarray  # (K, D) class means of log1p features
    precision: np.ndarray  # (D, D) shared inverse covariance
    reference: np.ndarray  # sorted distances of the training images (percentile scale)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray | None = None) -> FeatureDensity:
        """Class-conditional when `labels` are given, one Gaussian otherwise."""
        from sklearn.covariance import LedoitWolf  # heavy; only `python -m core calibrate` fits

        f = _transform(features)
        labels = np.zeros(len(f), int) if labels is None else np.asarray(labels)
        classes = np.unique(labels)
        means = np.stack([f[labels == k].mean(0) for k in classes])
        centred = np.concatenate([f[labels == k] - means[i] for i, k in enumerate(classes)])
        precision = LedoitWolf().fit(centred).precision_
        density = cls(means, precision, np.zeros(0))
        density.reference = np.sort(density.distance(features))
        return density

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Smallest Mahalanobis distance to a class mean, per row of features (N, D)."""
        f = _transform(features)
        d2 = np.stack([np.einsum("ij,jk,ik->i", f - m, self.precision, f - m) for m in self.means], 1)
        return np.sqrt(np.clip(d2.min(1), 0.0, None))

    def percentile(self, features: np.ndarray) -> np.ndarray:
        """Share of training images at most as far from the training data as each row (0..1)."""
        d = self.distance(features)
        return np.searchsorted(self.reference, d, side="right") / max(len(self.reference), 1)

    # -- persistence (plain tensors: loads with torch.load(weights_only=True))
    def state(self) -> dict:
        return {
            "means": torch.from_numpy(self.means.astype(np.float64)),
            "precision": torch.from_numpy(self.precision.astype(np.float64)),
            "reference": torch.from_numpy(self.reference.astype(np.float64)),
        }

    @classmethod
    def from_state(cls, state: dict) -> FeatureDensity:
        return cls(*(np.asarray(state[k].numpy(), dtype=np.float64) for k in ("means", "precision", "reference")))


def _transform(features: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(np.asarray(features, dtype=np.float64), 0.0, None))


def load_density(loaded, key: str = "feature_density") -> FeatureDensity | None:
    """The density a loaded version's card declares under `key` ("feature_density": the referral
    rule's, "gate": the input gate's), verified by the sha256 in the card; None when the version
    has none. A file that does not match its card raises UnverifiedFile: the version's referral
    rule or gate cannot be trusted."""
    info = ModelCard.of(loaded).side_file(key)
    folder = getattr(loaded, "path", None)
    if info is None or not info.sha256 or folder is None:
        return None
    path = Path(folder) / (info.file or FILE)
    if not path.is_file() or sha256_file(path) != info.sha256:
        raise UnverifiedFile(f"{path.name} is missing or does not match the sha256 in the card")
    return FeatureDensity.from_state(torch.load(path, map_location="cpu", weights_only=True))
