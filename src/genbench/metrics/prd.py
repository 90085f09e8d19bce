"""Precision and recall for distributions (PRD; Sajjadi, Bachem, Lucic, Bousquet, Gelly 2018).

Conventions, as the reference code (prd_score.py of msmsajjadi/precision-recall-distributions,
from google/compare_gan):

* Both feature sets (model = "eval", data = "ref") are stacked, the union is clustered by
  k-means into ``num_clusters`` = 20 bins, and each set becomes a histogram over the bins
  (a probability vector).
* For the two histograms Q (eval) and P (ref), on ``num_angles`` = 1001 angles θ equally spaced
  in [ε, π/2 − ε] (ε = 1e-10), with slopes λ = tan θ:
  precision α(λ) = Σ_k min(λ P_k, Q_k), recall β(λ) = α(λ)/λ. Values above 1.001 are an error;
  values just above 1 (rounding) are clipped to [0, 1].
* Clustering + PRD is repeated ``num_runs`` = 10 times and the precision and recall arrays are
  averaged elementwise.
* The summary is (F_8, F_1/8): the maxima over the curve of
  F_β(p, r) = (1 + β²) p r / (β² p + r + 1e-10). F_8 weighs recall (does the model cover the
  data?), F_1/8 weighs precision (are the model's samples like the data?).
* Both sets must have the same size (the clustering is biased towards the larger set);
  ``balance="subsample"`` instead subsamples the larger set with the seed and records it.

Unlike the reference (which passes no ``random_state``), everything is seeded: one ``seed``
gives the same curve every time. Run ``r`` clusters with the ``r``-th value of
``numpy.random.SeedSequence(seed).spawn(2)[1].generate_state(num_runs)``.

Two k-means implementations (``kmeans=``):

* ``"reference"``: scikit-learn ``MiniBatchKMeans(n_clusters=20, n_init=10)`` on float64, as the
  reference code calls it, with the installed scikit-learn's other defaults (batch_size 1024
  since scikit-learn 1.0; the reference repo pinned 0.19.2, whose batch_size was 100), and a
  ``random_state`` per run.
* ``"fast"``: genbench's own seeded k-means in torch (float32 matmul distances): greedy
  k-means++ seeding on a subsample, then full-batch Lloyd iterations on all points, best of
  ``FAST_N_INIT`` initialisations. It needs no scikit-learn.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from genbench.errors import GenbenchError

KMeansMethod = Literal["reference", "fast"]
BalanceMode = Literal["error", "subsample", "off"]

#: Initialisations per run of the fast k-means (the reference uses 10 per run).
FAST_N_INIT = 2
#: Points for the k-means++ seeding of the fast k-means (as scikit-learn's MiniBatchKMeans
#: default init_size, 3 × batch_size 1024).
FAST_INIT_SIZE = 3072
#: Lloyd iterations at most, and the relative centre-shift tolerance (scikit-learn's tol: the
#: squared centre shift, summed, against the mean per-feature variance).
FAST_MAX_ITER = 100
FAST_TOL = 1e-4

DEFAULT_KMEANS: KMeansMethod = "fast"


# ---------------------------------------------------------------------------------------------
# PRD from two histograms


def _check_num_angles(num_angles) -> int:
    if (isinstance(num_angles, bool) or not isinstance(num_angles, numbers.Integral)
            or not 3 <= num_angles <= 1_000_000):
        raise GenbenchError(f"num_angles must be an integer in [3, 1e6], got {num_angles!r}")
    return int(num_angles)


def _check_epsilon(epsilon) -> float:
    if (isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real)
            or not 0.0 < float(epsilon) < 0.1):
        raise GenbenchError(f"epsilon must be a number in (0, 0.1), got {epsilon!r}")
    return float(epsilon)


def _as_distribution(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise GenbenchError(f"{name} must be a non-empty 1-D histogram, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise GenbenchError(f"{name} must hold finite non-negative probabilities")
    return arr


def compute_prd(eval_dist, ref_dist, num_angles: int = 1001,
                epsilon: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """The PRD curve of the histogram ``eval_dist`` (model, Q) against ``ref_dist`` (data, P).

    Returns ``(precision, recall)``, float64 arrays of length ``num_angles``: for the angles
    θ = linspace(ε, π/2 − ε) and λ = tan θ, precision = Σ min(λ P, Q) and recall =
    precision / λ. Index 0 is the high-recall end (λ ≈ 0), the last index the high-precision
    end. The histograms are used as given (the reference does not renormalise them); a value
    above 1.001 is an error, rounding just above 1 is clipped to [0, 1].
    """
    num_angles = _check_num_angles(num_angles)
    epsilon = _check_epsilon(epsilon)
    q = _as_distribution("eval_dist", eval_dist)
    p = _as_distribution("ref_dist", ref_dist)
    if q.shape != p.shape:
        raise GenbenchError(f"eval_dist and ref_dist must have the same length, got {q.size} "
                            f"and {p.size}")
    slopes = np.tan(np.linspace(epsilon, np.pi / 2 - epsilon, num=num_angles))
    precision = np.minimum(slopes[:, None] * p[None, :], q[None, :]).sum(axis=1)
    recall = precision / slopes
    largest = max(float(precision.max()), float(recall.max()))
    if largest > 1.001:
        raise GenbenchError(f"PRD value {largest:.6g} > 1.001: eval_dist and ref_dist must be "
                            "probability vectors (each summing to 1)")
    return np.clip(precision, 0.0, 1.0), np.clip(recall, 0.0, 1.0)


def _as_unit_interval(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not (np.all(arr >= 0) and np.all(arr <= 1)):  # NaN fails too
        raise GenbenchError(f"all values in {name} must be in [0, 1]")
    return arr


def f_beta(precision, recall, beta: float = 1.0, epsilon: float = 1e-10) -> np.ndarray:
    """F_β = (1 + β²) p r / (β² p + r + ε) elementwise (ε avoids 0/0; F_β(0, 0) = 0)."""
    precision = _as_unit_interval("precision", precision)
    recall = _as_unit_interval("recall", recall)
    if precision.shape != recall.shape:
        raise GenbenchError(f"precision and recall must have the same shape, got "
                            f"{precision.shape} and {recall.shape}")
    if not (isinstance(beta, numbers.Real) and beta > 0):
        raise GenbenchError(f"beta must be positive, got {beta!r}")
    b2 = float(beta) ** 2
    return (1 + b2) * precision * recall / (b2 * precision + recall + epsilon)


def prd_to_max_f_beta_pair(precision, recall, beta: float = 8) -> tuple[float, float]:
    """(max F_β, max F_1/β) over the curve: with β = 8, (F_8, F_1/8) ≈ (recall, precision)."""
    if not (isinstance(beta, numbers.Real) and beta > 0):
        raise GenbenchError(f"beta must be positive, got {beta!r}")
    fb = f_beta(precision, recall, beta)
    fb_inv = f_beta(precision, recall, 1.0 / beta)
    if fb.size == 0:
        raise GenbenchError("precision and recall must not be empty")
    return float(fb.max()), float(fb_inv.max())


# ---------------------------------------------------------------------------------------------
# Clustering


def _as_features(name: str, value) -> np.ndarray | torch.Tensor:
    if isinstance(value, torch.Tensor):
        arr = value.detach()
        finite = bool(torch.isfinite(arr).all()) if arr.numel() else True
    else:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise GenbenchError(f"{name} must be a numeric array, got dtype {arr.dtype}")
        finite = bool(np.all(np.isfinite(arr)))
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise GenbenchError(f"{name} must be a non-empty 2-D array (samples × features), got "
                            f"shape {tuple(arr.shape)}")
    if not finite:
        raise GenbenchError(f"{name} contains NaN or infinite values")
    return arr


def _check_pair(eval_features, ref_features):
    eval_features = _as_features("eval_features", eval_features)
    ref_features = _as_features("ref_features", ref_features)
    if eval_features.shape[1] != ref_features.shape[1]:
        raise GenbenchError(f"eval_features and ref_features have different feature dimensions "
                            f"({eval_features.shape[1]} and {ref_features.shape[1]}); both "
                            "must come from the same feature extractor")
    return eval_features, ref_features


def _check_num_clusters(num_clusters, num_points: int) -> int:
    if (isinstance(num_clusters, bool) or not isinstance(num_clusters, numbers.Integral)
            or num_clusters < 1):
        raise GenbenchError(f"num_clusters must be a positive integer, got {num_clusters!r}")
    if num_clusters > num_points:
        raise GenbenchError(f"num_clusters ({num_clusters}) must not exceed the number of "
                            f"points clustered ({num_points})")
    return int(num_clusters)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise GenbenchError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_method(kmeans) -> str:
    if kmeans not in ("reference", "fast"):
        raise GenbenchError(f"kmeans must be 'reference' or 'fast', got {kmeans!r}")
    return kmeans


def _to_numpy64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _to_torch(x, device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device if device is not None else x.device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype,
                           device=device if device is not None else "cpu")


def _histograms(labels: np.ndarray, num_eval: int, num_clusters: int):
    """Per-set probability vectors over the clusters (as np.histogram(..., density=True))."""
    labels = np.asarray(labels, dtype=np.int64)
    eval_labels, ref_labels = labels[:num_eval], labels[num_eval:]
    eval_hist = np.bincount(eval_labels, minlength=num_clusters) / eval_labels.size
    ref_hist = np.bincount(ref_labels, minlength=num_clusters) / ref_labels.size
    return eval_hist.astype(np.float64), ref_hist.astype(np.float64)


def _reference_labels(data: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    try:
        from sklearn.cluster import MiniBatchKMeans
    except ImportError:  # pragma: no cover - depends on the environment
        raise GenbenchError("kmeans='reference' needs scikit-learn (pip install scikit-learn); "
                            "kmeans='fast' does not") from None
    kmeans = MiniBatchKMeans(n_clusters=num_clusters, n_init=10, random_state=seed)
    return kmeans.fit(data).labels_


class _FastKMeansData:
    """The stacked points on the torch device, with what every run reuses (squared norms,
    the Lloyd tolerance)."""

    def __init__(self, eval_features, ref_features, device=None,
                 dtype: torch.dtype = torch.float32) -> None:
        x_eval = _to_torch(eval_features, device, dtype)
        x_ref = _to_torch(ref_features, x_eval.device, dtype)
        self.x = torch.cat([x_eval, x_ref]).contiguous()
        self.num_eval = int(x_eval.shape[0])
        self.sq_norms = (self.x * self.x).sum(1)
        # scikit-learn's tolerance: tol × mean per-feature variance (computed in float64).
        var = self.x.to(torch.float64).var(0, unbiased=False).mean()
        self.tol = float(var) * FAST_TOL


def _sq_dist(data: _FastKMeansData, idx: torch.Tensor | None, centers: torch.Tensor):
    """Squared distances (points × centres) by ‖x‖² − 2 x·c + ‖c‖², clamped at 0."""
    x = data.x if idx is None else data.x[idx]
    x_sq = data.sq_norms if idx is None else data.sq_norms[idx]
    c_sq = (centers * centers).sum(1)
    d = torch.addmm(c_sq[None, :], x, centers.T, beta=1.0, alpha=-2.0)
    d += x_sq[:, None]
    return d.clamp_(min=0.0)


def _kmeans_plusplus(data: _FastKMeansData, idx: torch.Tensor, num_clusters: int,
                     gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding on the points ``idx`` (2 + ⌊ln k⌋ candidates per step, the
    one that lowers the potential most is kept, as scikit-learn does)."""
    n = idx.numel()
    trials = 2 + int(math.log(num_clusters))
    first = idx[torch.randint(n, (1,), generator=gen, device=gen.device)]
    centers = [data.x[first[0]]]
    closest = _sq_dist(data, idx, data.x[first])[:, 0].to(torch.float64)
    for _ in range(1, num_clusters):
        potential = closest.sum()
        cumulative = torch.cumsum(closest, 0)
        draws = torch.rand(trials, generator=gen, device=gen.device, dtype=torch.float64)
        candidates = torch.searchsorted(cumulative, draws * potential).clamp_(max=n - 1)
        cand_dist = _sq_dist(data, idx, data.x[idx[candidates]]).to(torch.float64)
        cand_dist = torch.minimum(cand_dist, closest[:, None])
        best = int(torch.argmin(cand_dist.sum(0)))
        closest = cand_dist[:, best]
        centers.append(data.x[idx[candidates[best]]])
    return torch.stack(centers)


def _lloyd(data: _FastKMeansData, centers: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Full-batch Lloyd iterations from ``centers``; returns (labels, inertia)."""
    k = centers.shape[0]
    labels = None
    for _ in range(FAST_MAX_ITER):
        min_dist, new_labels = _sq_dist(data, None, centers).min(1)
        counts = torch.bincount(new_labels, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, new_labels, data.x)
        empty = torch.nonzero(counts == 0).flatten()
        new_centers = sums / counts.clamp(min=1).to(sums.dtype)[:, None]
        if empty.numel():  # move empty clusters to the points farthest from their centre
            far = torch.topk(min_dist, empty.numel()).indices
            new_centers[empty] = data.x[far]
        shift = float(((new_centers - centers) ** 2).sum())
        centers = new_centers
        converged = labels is not None and bool(torch.equal(labels, new_labels))
        labels = new_labels
        if converged or shift <= data.tol:
            break
    min_dist, labels = _sq_dist(data, None, centers).min(1)
    return labels, float(min_dist.sum())


def _fast_labels(data: _FastKMeansData, num_clusters: int, seed: int,
                 n_init: int = FAST_N_INIT) -> np.ndarray:
    device = data.x.device
    gen = torch.Generator(device=device).manual_seed(seed)
    n = data.x.shape[0]
    best_labels, best_inertia = None, math.inf
    for _ in range(n_init):
        if n > FAST_INIT_SIZE:
            idx = torch.randperm(n, generator=gen, device=device)[:FAST_INIT_SIZE]
        else:
            idx = torch.arange(n, device=device)
        labels, inertia = _lloyd(data, _kmeans_plusplus(data, idx, num_clusters, gen))
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return best_labels.cpu().numpy()


def cluster_histograms(eval_features, ref_features, num_clusters: int = 20, *, seed: int = 0,
                       method: KMeansMethod = DEFAULT_KMEANS,
                       device: str | torch.device | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the union of both feature sets and return (eval_hist, ref_hist), each a
    probability vector over the ``num_clusters`` clusters (one run of the reference's
    ``_cluster_into_bins``, seeded).

    ``method="reference"`` is scikit-learn's MiniBatchKMeans(n_init=10, random_state=seed) on
    float64; ``method="fast"`` is genbench's torch k-means (float32, on ``device``, default the
    features' device or the CPU). The same seed and inputs give the same histograms (on the same
    device and library versions).
    """
    eval_features, ref_features = _check_pair(eval_features, ref_features)
    num_points = eval_features.shape[0] + ref_features.shape[0]
    num_clusters = _check_num_clusters(num_clusters, num_points)
    seed = _check_seed(seed)
    method = _check_method(method)
    if method == "reference":
        data = np.vstack([_to_numpy64(eval_features), _to_numpy64(ref_features)])
        labels = _reference_labels(data, num_clusters, seed)
    else:
        labels = _fast_labels(_FastKMeansData(eval_features, ref_features, device),
                              num_clusters, seed)
    return _histograms(labels, eval_features.shape[0], num_clusters)


# ---------------------------------------------------------------------------------------------
# PRD from features


@dataclass
class PRDResult:
    """A PRD curve (averaged over runs) with its (F_8, F_1/8) summary and how it was made.

    ``precision``/``recall`` have ``num_angles`` entries (index 0: the high-recall end).
    ``eval_histograms``/``ref_histograms`` are the per-run cluster histograms
    (``num_runs`` × ``num_clusters``). ``num_eval``/``num_ref`` are the sizes used;
    ``num_eval_given``/``num_ref_given`` the sizes passed; ``subsampled`` says whether the
    larger set was subsampled (``balance="subsample"``).
    """

    precision: np.ndarray
    recall: np.ndarray
    f_beta: float
    f_beta_inv: float
    beta: float = 8.0
    num_clusters: int = 20
    num_angles: int = 1001
    num_runs: int = 10
    seed: int = 0
    kmeans: str = DEFAULT_KMEANS
    balance: str = "error"
    num_eval: int = 0
    num_ref: int = 0
    num_eval_given: int = 0
    num_ref_given: int = 0
    subsampled: bool = False
    eval_histograms: np.ndarray | None = field(default=None, repr=False)
    ref_histograms: np.ndarray | None = field(default=None, repr=False)

    @property
    def f8(self) -> float:
        """max F_8 (recall-like)."""
        return self.f_beta

    @property
    def f1_8(self) -> float:
        """max F_1/8 (precision-like)."""
        return self.f_beta_inv

    def summary(self) -> dict[str, Any]:
        """The scalars and parameters, JSON-ready (no arrays)."""
        return {
            "f_beta": self.f_beta, "f_beta_inv": self.f_beta_inv, "beta": self.beta,
            "num_clusters": self.num_clusters, "num_angles": self.num_angles,
            "num_runs": self.num_runs, "seed": self.seed, "kmeans": self.kmeans,
            "balance": self.balance, "num_eval": self.num_eval, "num_ref": self.num_ref,
            "num_eval_given": self.num_eval_given, "num_ref_given": self.num_ref_given,
            "subsampled": self.subsampled,
        }


def _take_rows(x, idx: np.ndarray):
    if isinstance(x, torch.Tensor):
        return x[torch.as_tensor(idx, device=x.device)]
    return x[idx]


def prd_from_features(eval_features, ref_features, *, num_clusters: int = 20,
                      num_angles: int = 1001, num_runs: int = 10, seed: int = 0,
                      balance: BalanceMode = "error", kmeans: KMeansMethod = DEFAULT_KMEANS,
                      beta: float = 8, device: str | torch.device | None = None) -> PRDResult:
    """PRD of the model features ``eval_features`` against the data features ``ref_features``
    (each samples × features, same extractor), as the reference ``compute_prd_from_embedding``:
    ``num_runs`` seeded clusterings of the union into ``num_clusters`` bins, a PRD curve on
    ``num_angles`` angles for each, averaged; then (F_β, F_1/β) of the averaged curve.

    ``balance``: ``"error"`` (default, as the reference) raises when the set sizes differ;
    ``"subsample"`` draws (with the seed, without replacement) as many rows of the larger set
    as the smaller has, and records it; ``"off"`` clusters unequal sets as given (the
    reference's ``enforce_balance=False``; the clustering is then biased towards the larger
    set — not recommended). ``kmeans``: ``"fast"`` (default) or ``"reference"``; see the module
    docstring.
    """
    eval_features, ref_features = _check_pair(eval_features, ref_features)
    num_angles = _check_num_angles(num_angles)
    seed = _check_seed(seed)
    kmeans = _check_method(kmeans)
    if balance not in ("error", "subsample", "off"):
        raise GenbenchError(f"balance must be 'error', 'subsample' or 'off', got {balance!r}")
    if isinstance(num_runs, bool) or not isinstance(num_runs, numbers.Integral) or num_runs < 1:
        raise GenbenchError(f"num_runs must be a positive integer, got {num_runs!r}")
    if not (isinstance(beta, numbers.Real) and beta > 0):
        raise GenbenchError(f"beta must be positive, got {beta!r}")
    n_eval_given, n_ref_given = int(eval_features.shape[0]), int(ref_features.shape[0])
    subsample_seq, runs_seq = np.random.SeedSequence(seed).spawn(2)
    subsampled = False
    if n_eval_given != n_ref_given:
        if balance == "error":
            raise GenbenchError(
                f"eval_features has {n_eval_given} samples and ref_features {n_ref_given}: PRD "
                "needs equal sizes (unequal sets bias the clustering); pass the same number, "
                "or balance='subsample' to subsample the larger set with the seed")
        if balance == "subsample":
            rng = np.random.default_rng(subsample_seq)
            n = min(n_eval_given, n_ref_given)
            if n_eval_given > n:
                eval_features = _take_rows(eval_features,
                                           np.sort(rng.choice(n_eval_given, n, replace=False)))
            else:
                ref_features = _take_rows(ref_features,
                                          np.sort(rng.choice(n_ref_given, n, replace=False)))
            subsampled = True
    n_eval, n_ref = int(eval_features.shape[0]), int(ref_features.shape[0])
    num_clusters = _check_num_clusters(num_clusters, n_eval + n_ref)
    run_seeds = [int(s) for s in runs_seq.generate_state(int(num_runs))]

    if kmeans == "reference":
        data = np.vstack([_to_numpy64(eval_features), _to_numpy64(ref_features)])

        def labels_for(run_seed: int) -> np.ndarray:
            return _reference_labels(data, num_clusters, run_seed)
    else:
        fast_data = _FastKMeansData(eval_features, ref_features, device)

        def labels_for(run_seed: int) -> np.ndarray:
            return _fast_labels(fast_data, num_clusters, run_seed)

    eval_hists, ref_hists, precisions, recalls = [], [], [], []
    for run_seed in run_seeds:
        eval_hist, ref_hist = _histograms(labels_for(run_seed), n_eval, num_clusters)
        precision, recall = compute_prd(eval_hist, ref_hist, num_angles)
        eval_hists.append(eval_hist)
        ref_hists.append(ref_hist)
        precisions.append(precision)
        recalls.append(recall)
    precision = np.mean(precisions, axis=0)
    recall = np.mean(recalls, axis=0)
    fb, fb_inv = prd_to_max_f_beta_pair(precision, recall, beta)
    return PRDResult(
        precision=precision, recall=recall, f_beta=fb, f_beta_inv=fb_inv, beta=float(beta),
        num_clusters=num_clusters, num_angles=num_angles, num_runs=int(num_runs), seed=seed,
        kmeans=kmeans, balance=balance, num_eval=n_eval, num_ref=n_ref,
        num_eval_given=n_eval_given, num_ref_given=n_ref_given, subsampled=subsampled,
        eval_histograms=np.stack(eval_hists), ref_histograms=np.stack(ref_hists))


__all__ = [
    "DEFAULT_KMEANS", "PRDResult", "cluster_histograms", "compute_prd", "f_beta",
    "prd_from_features", "prd_to_max_f_beta_pair",
]
