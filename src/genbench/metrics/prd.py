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

* ``"reference"`` (the default): scikit-learn ``MiniBatchKMeans(n_clusters=20, n_init=10)``
  on float64, as the reference code calls it, with the installed scikit-learn's other defaults
  (batch_size 1024 since scikit-learn 1.0; the reference repo pinned 0.19.2, whose batch_size
  was 100), and a ``random_state`` per run.
* ``"fast"`` (an option): genbench's own torch port of the same mini-batch k-means
  (scikit-learn's MiniBatchKMeans algorithm and defaults: best of 10 greedy k-means++
  seedings on 3 × 1024 random points, mini-batches of 1024, count-based learning rates,
  reassignment of near-empty centres, early stop on the smoothed batch inertia), on float32,
  with the 10 seedings of a run (each on its own draw of points) computed together (in
  bfloat16 where that is native, see ``_FastKMeansData``), and one batched pass assigning
  all points for all runs; 3.9× faster on CPU. Same algorithm, so the same statistics: on
  synthetic Inception-like features its (F_8, F_1/8) agree with the reference's within 0.002
  where the clustering is stable, and where it is bimodal its single-run outcomes fall on
  the same local optima with the same frequencies within sampling error (bench/prd_speed.py,
  bench/prd_outcomes.py). It draws its own random numbers, so a run's clustering is not the
  reference's, and its agreement has been shown on synthetic families only: hence not the
  default. It runs on the device of torch features (or ``device=``).

PRD values themselves vary with the clustering: with ``num_runs`` = 10, one seed's F_1/8 can
differ from another's by a few hundredths when the data can be clustered in two different
ways (bench/prd_speed.py, "junk": standard deviation 0.04 over seeds, for both
implementations). Compare models with the same seed and settings, and report the seed.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.precision import fast_bfloat16

KMeansMethod = Literal["reference", "fast"]
BalanceMode = Literal["error", "subsample", "off"]

#: k-means++ seedings per run of the fast k-means; the one with the lowest inertia on a
#: validation draw is refined (the reference: 10). Fewer are cheaper but not equivalent: on data
#: where the clustering is bimodal (bench/prd_speed.py, "junk", 30 seeds) 1-5 seedings lowered
#: the mean F_1/8 by 0.02-0.04, 10 matched the reference.
FAST_N_INIT = 10
#: scikit-learn MiniBatchKMeans defaults, which the fast k-means follows: batch size, epochs at
#: most, steps without improvement of the smoothed inertia before stopping, and the count
#: ratio below which a centre is moved to a random point.
FAST_BATCH_SIZE = 1024
FAST_MAX_ITER = 100
FAST_MAX_NO_IMPROVEMENT = 10
FAST_REASSIGNMENT_RATIO = 0.01

#: The default is the reference clustering: the fast one follows the same algorithm but draws
#: its own random numbers, so it cannot equal it run for run, and its agreement was shown on
#: synthetic families only (bench/prd_speed.py, bench/prd_outcomes.py). It stays an option.
DEFAULT_KMEANS: KMeansMethod = "reference"
DEFAULT_NUM_CLUSTERS = 20


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
    if (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
            or not 0 <= seed < 2**32):
        raise GenbenchError(f"seed must be an integer in [0, 2**32), got {seed!r}")
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
    """The stacked points on the torch device, centred (k-means does not depend on a shift;
    centring keeps the float32 distance expansion accurate for features with a large mean,
    such as non-negative Inception activations), with their squared norms (reused by every
    run).

    ``seed_x`` / ``seed_sq_norms`` are what the k-means++ seeding measures distances on: where
    bfloat16 matmuls are native (CUDA, CPUs with AVX512-BF16 or AMX) a bfloat16 copy of the
    points with the squared norms of those rounded points, else the float32 points. The
    seeding is memory-bound (each step reads every seeding's draw of points); bfloat16 halves
    that. Its distances then carry a relative error of about 2⁻⁸ (rounded products), far
    below the randomness of D² sampling; the seeded centres are the float32 points, and
    everything after the seeding is float32.
    """

    def __init__(self, eval_features, ref_features, device=None,
                 dtype: torch.dtype = torch.float32) -> None:
        x_eval = _to_torch(eval_features, device, torch.float64)
        x_ref = _to_torch(ref_features, x_eval.device, torch.float64)
        x = torch.cat([x_eval, x_ref])
        self.x = (x - x.mean(0)).to(dtype).contiguous()
        self.num_eval = int(x_eval.shape[0])
        self.sq_norms = (self.x * self.x).sum(1)
        if dtype == torch.float32 and fast_bfloat16(self.x.device):
            self.seed_x = self.x.to(torch.bfloat16)
            rounded = self.seed_x.to(torch.float32)
            self.seed_sq_norms = (rounded * rounded).sum(1)
        else:
            self.seed_x, self.seed_sq_norms = self.x, self.sq_norms


def _sq_dist(x: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Squared distances (points × centres) by ‖x‖² − 2 x·c + ‖c‖², clamped at 0."""
    c_sq = (centers * centers).sum(1)
    d = torch.addmm(c_sq[None, :], x, centers.T, beta=1.0, alpha=-2.0)
    d += x_sq[:, None]
    return d.clamp_(min=0.0)


def _batched_sq_dist(x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor,
                     c_sq: torch.Tensor) -> torch.Tensor:
    """Squared distances (S, T, m) from candidates c (S, T, d) with squared norms c_sq (S, T)
    to points x (S, m, d) with squared norms x_sq (S, m), per seeding s, in float32 (the
    products in x's dtype), clamped at 0."""
    dots = torch.bmm(c, x.transpose(1, 2)).to(torch.float32)
    d = (x_sq[:, None, :] + c_sq[:, :, None]).sub_(dots, alpha=2.0)
    return d.clamp_(min=0.0)


def _kmeans_plusplus_lockstep(x: torch.Tensor, x_sq: torch.Tensor, num_clusters: int,
                              gen: torch.Generator) -> torch.Tensor:
    """Independent greedy k-means++ seedings, one per row of x (S, m, d) with squared norms
    x_sq (S, m): each its own draw of points, as scikit-learn's n_init, computed together (one
    batched matrix product per step for all seedings). Returns the chosen rows (S, k) of each
    draw."""
    n_init, m, _ = x.shape
    trials = 2 + int(math.log(num_clusters))
    rows = torch.arange(n_init, device=x.device)
    first = torch.randint(m, (n_init,), generator=gen, device=gen.device)
    chosen = [first]
    closest = _batched_sq_dist(x, x_sq, x[rows, first][:, None, :],
                               x_sq[rows, first][:, None])[:, 0].to(torch.float64)
    for _ in range(1, num_clusters):
        cumulative = torch.cumsum(closest, 1)
        draws = torch.rand((n_init, trials), generator=gen, device=gen.device,
                           dtype=torch.float64) * cumulative[:, -1:]
        candidates = torch.searchsorted(cumulative, draws).clamp_(max=m - 1)  # (S, T)
        dist = _batched_sq_dist(x, x_sq, x[rows[:, None], candidates],
                                x_sq[rows[:, None], candidates]).to(torch.float64)
        dist = torch.minimum(dist, closest[:, None, :])
        best = torch.argmin(dist.sum(2), 1)
        closest = dist[rows, best]
        chosen.append(candidates[rows, best])
    return torch.stack(chosen, 1)


def _minibatch_kmeans(data: _FastKMeansData, num_clusters: int, seed: int,
                      n_init: int | None = None) -> torch.Tensor:
    """Mini-batch k-means (Sculley 2010) as scikit-learn's MiniBatchKMeans runs it with its
    defaults, written in torch; returns the centres. Each of the ``n_init`` seedings runs on its
    own random draw of ``init_size`` points, as in scikit-learn, all of them together (one
    batched matrix product per k-means++ step).

    Best of ``n_init`` greedy k-means++ seedings (judged by the inertia of a validation draw of
    ``init_size`` = 3 × batch_size points); then steps on
    random mini-batches of 1024 points (drawn with replacement): each centre moves to the mean
    of every point ever assigned to it; centres holding less than 1% of the largest count are
    moved to random points of the batch; stop after 100 epochs or when the exponentially
    weighted batch inertia has not improved for 10 steps.
    """
    n_init = FAST_N_INIT if n_init is None else n_init
    x, x_sq = data.x, data.sq_norms
    n = x.shape[0]
    device = x.device
    gen = torch.Generator(device=device).manual_seed(seed)
    batch = min(FAST_BATCH_SIZE, n)
    init_size = min(max(3 * batch, 3 * num_clusters), n)

    def draw(size: int) -> torch.Tensor:
        return torch.randint(n, (size,), generator=gen, device=device)

    valid = draw(init_size)
    x_valid, x_valid_sq = x[valid], x_sq[valid]
    idx = draw(n_init * init_size).view(n_init, init_size) if init_size < n else \
        torch.arange(n, device=device).expand(n_init, n)
    chosen = _kmeans_plusplus_lockstep(data.seed_x[idx], data.seed_sq_norms[idx],
                                       num_clusters, gen)
    seedings = x[torch.gather(idx, 1, chosen)]  # (n_init, k, d), float32
    dist = _sq_dist(x_valid, x_valid_sq, seedings.reshape(n_init * num_clusters, -1))
    inertia = dist.view(-1, n_init, num_clusters).min(2).values.sum(0)
    centers = seedings[int(torch.argmin(inertia))].clone()

    counts = torch.zeros(num_clusters, dtype=x.dtype, device=device)
    alpha = min(batch * 2.0 / (n + 1), 1.0)
    ewa = ewa_min = None
    no_improvement = 0
    since_reassign = 0
    for step in range(FAST_MAX_ITER * n // batch):
        # scikit-learn decides on reassignment before the step: when a centre has no points
        # yet, or after every 10 × k points (with k = 20 < batch size: every step)
        since_reassign += batch
        reassign = bool((counts == 0).any()) or since_reassign >= 10 * num_clusters
        if reassign:
            since_reassign = 0
        idx = draw(batch)
        xb = x[idx]
        min_dist, labels = _sq_dist(xb, x_sq[idx], centers).min(1)
        batch_inertia = float(min_dist.sum()) / batch
        in_batch = torch.bincount(labels, minlength=num_clusters).to(x.dtype)
        sums = torch.zeros_like(centers).index_add_(0, labels, xb)
        total = counts + in_batch
        moved = in_batch > 0
        updated = (centers * counts[:, None] + sums) / total.clamp(min=1e-30)[:, None]
        centers = torch.where(moved[:, None], updated, centers)
        counts = total
        if reassign:
            small = counts < FAST_REASSIGNMENT_RATIO * counts.max()
            if int(small.sum()) > batch // 2:  # at most half a batch of new centres
                small[torch.argsort(counts)[batch // 2:]] = False
            n_small = int(small.sum())
            if n_small:
                pick = torch.randperm(batch, generator=gen, device=device)[:n_small]
                centers[small] = xb[pick]
                counts[small] = counts[~small].min()
        if step == 0:  # the first batch inertia measures the initialisation only
            continue
        ewa = batch_inertia if ewa is None else ewa * (1 - alpha) + batch_inertia * alpha
        if ewa_min is None or ewa < ewa_min:
            ewa_min, no_improvement = ewa, 0
        else:
            no_improvement += 1
            if no_improvement >= FAST_MAX_NO_IMPROVEMENT:
                break
    return centers


def _nearest(data: _FastKMeansData, centers: list[torch.Tensor], chunk: int = 65536
             ) -> list[np.ndarray]:
    """Labels of all points for each set of centres, in one pass over the points."""
    stacked = torch.cat(centers)
    k = centers[0].shape[0]
    out = []
    for start in range(0, data.x.shape[0], chunk):
        d = _sq_dist(data.x[start:start + chunk], data.sq_norms[start:start + chunk], stacked)
        out.append(d.view(d.shape[0], len(centers), k).argmin(2))
    labels = torch.cat(out).cpu().numpy()
    return [labels[:, r] for r in range(len(centers))]


def _fast_labels(data: _FastKMeansData, num_clusters: int, seeds: list[int]
                 ) -> list[np.ndarray]:
    return _nearest(data, [_minibatch_kmeans(data, num_clusters, s) for s in seeds])


def cluster_histograms(eval_features, ref_features, num_clusters: int = 20, *, seed: int = 0,
                       method: KMeansMethod = DEFAULT_KMEANS,
                       device: str | torch.device | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the union of both feature sets and return (eval_hist, ref_hist), each a
    probability vector over the ``num_clusters`` clusters (one run of the reference's
    ``_cluster_into_bins``, seeded).

    ``method="reference"`` is scikit-learn's MiniBatchKMeans(n_init=10, random_state=seed) on
    float64; ``method="fast"`` is genbench's torch k-means (float32, its seeding in bfloat16
    where that is native, on ``device``, default the features' device or the CPU). The same
    seed and inputs give the same histograms (on the same device, CPU features and library
    versions).
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
                              num_clusters, [seed])[0]
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

    def to_dict(self) -> dict[str, Any]:
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


def prd_from_features(eval_features, ref_features, *, num_clusters: int = DEFAULT_NUM_CLUSTERS,
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
    set — not recommended). ``kmeans``: ``"reference"`` (default, scikit-learn) or ``"fast"``
    (3.9× faster on CPU, not shown equal on every kind of data); see the module docstring.
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
        run_labels = [_reference_labels(data, num_clusters, s) for s in run_seeds]
    else:
        run_labels = _fast_labels(_FastKMeansData(eval_features, ref_features, device),
                                  num_clusters, run_seeds)

    eval_hists, ref_hists, precisions, recalls = [], [], [], []
    for labels in run_labels:
        eval_hist, ref_hist = _histograms(labels, n_eval, num_clusters)
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
