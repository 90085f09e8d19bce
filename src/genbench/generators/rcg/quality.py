"""How good an RCG representation is: the Fréchet distance between representation sets
(the paper's rep-FD: generated against real, beside the train-against-test lower bound) and
the linear-probe accuracy of an encoder's features."""

from __future__ import annotations

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.metrics.fid import frechet_distance


def representation_fd(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted (float64, unbiased covariance) to the
    rows of ``a`` and of ``b``."""
    a64, b64 = (np.asarray(x, dtype=np.float64) for x in (a, b))
    if a64.ndim != 2 or b64.shape[1:] != a64.shape[1:] or min(len(a64), len(b64)) < 2:
        raise GenbenchError("representation FD needs two N×D sets of one dimension, N >= 2")
    return frechet_distance(a64.mean(0), np.cov(a64, rowvar=False), b64.mean(0),
                            np.cov(b64, rowvar=False))


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, *, l2: float = 1e-4, iterations: int = 200) -> float:
    """Top-1 accuracy on the test set of a multinomial logistic regression fitted to the
    training features (standardised with the training mean and std; L2 penalty ``l2`` on the
    weights; float64 L-BFGS from zero, so deterministic)."""
    x = train_x.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    x = (x - mean) / std
    xt = (test_x.double() - mean) / std
    classes = int(max(int(train_y.max()), int(test_y.max()))) + 1
    weight = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optim = torch.optim.LBFGS([weight, bias], max_iter=iterations, history_size=20,
                              line_search_fn="strong_wolfe")
    y = train_y.long()

    def closure() -> torch.Tensor:
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) \
            + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optim.step(closure)
    with torch.no_grad():
        return float(((xt @ weight + bias).argmax(1) == test_y.long()).double().mean())
