"""Freeze reference precision/recall/density/coverage and KID values computed by the peers.

What it does
------------
1. Builds small seeded float32 feature sets (``make_case`` below; the recipe, shapes and a
   SHA-256 of each array's bytes are written to the JSON so the tests regenerate and check
   them instead of storing features):

   * ``gaussian`` – real 600 × 64 N(0, 1), fake 500 × 64 0.9·N(0, 1) + 0.25 (seed 0).
   * ``quantized_duplicates`` – 150 base points N(0, 1) × 16 rounded to multiples of 1/2;
     real repeats base point i (1 + i mod 4) times (373 rows, so some points have k or more
     duplicates and radius 0); fake is base[:100] followed by 300 new rounded points (seed 1).
     Every distance is exact in floating point, so ties are exact and ``<``/``<=`` differ.
   * ``identical`` – real 500 × 64 N(0, 1), fake an equal copy (seed 2).

2. Runs, on each case and for k = 3 and 5:

   * ``prdc.compute_prdc(real, fake, nearest_k=k)`` (strict ``<``),
   * torch-fidelity's ``calculate_precision_recall_full(fake, real, k)`` (``<=``, torch.cdist in
     float32; torch-fidelity's input1 is the generated set).

3. Runs torch-fidelity's KID, ``kid_features_to_metric``, on the ``gaussian`` case (A = real as
   its input1, B = fake) with float32 tensors (what torch-fidelity sees in practice) and float64
   tensors, for (subsets, subset size) = (10, 200) and (1, 500), rng_seed 2020, and its
   ``mmd2`` on the full 500 × 500 kernels (real[:500] vs fake, float64) for each of its three
   estimators.

4. Writes everything, with the peers' versions, to ``tests/data/prdc_kid_reference.json``.

How to run
----------
In the peers' virtual environment (prdc 0.2, torch-fidelity 0.4.0, scikit-learn), from the
repository root::

    /work/peers-venv/bin/python bench/prdc_kid_reference.py

It takes a few seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from importlib import metadata
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "prdc_kid_reference.json"

RECIPES = {
    "gaussian": {"seed": 0, "real_shape": [600, 64], "fake_shape": [500, 64],
                 "fake_scale": 0.9, "fake_shift": 0.25},
    "quantized_duplicates": {"seed": 1, "base_shape": [150, 16], "quantum": 0.5,
                             "max_repeat": 4, "copied_to_fake": 100, "new_fake": 300},
    "identical": {"seed": 2, "real_shape": [500, 64]},
}


def make_case(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(real, fake) float32 arrays of a case, from its recipe (same code as the tests)."""
    r = RECIPES[name]
    rng = np.random.default_rng(r["seed"])
    if name == "gaussian":
        real = rng.standard_normal(r["real_shape"])
        fake = r["fake_scale"] * rng.standard_normal(r["fake_shape"]) + r["fake_shift"]
    elif name == "quantized_duplicates":
        q = r["quantum"]
        base = np.round(rng.standard_normal(r["base_shape"]) / q) * q
        repeats = 1 + np.arange(len(base)) % r["max_repeat"]
        real = np.repeat(base, repeats, axis=0)
        new = np.round(rng.standard_normal((r["new_fake"], base.shape[1])) / q) * q
        fake = np.concatenate([base[:r["copied_to_fake"]], new])
    elif name == "identical":
        real = rng.standard_normal(r["real_shape"])
        fake = real.copy()
    else:
        raise KeyError(name)
    return real.astype(np.float32), fake.astype(np.float32)


def sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def main() -> None:
    import torch
    from prdc import compute_prdc
    from torch_fidelity.metric_kid import kernel_poly, kid_features_to_metric, mmd2
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    kernel_kwargs = {"kid_kernel": "poly", "kid_kernel_poly_degree": 3,
                     "kid_kernel_poly_gamma": None, "kid_kernel_poly_coef0": 1}
    out = {
        "generated_by": "bench/prdc_kid_reference.py (make_case holds the recipes' code)",
        "versions": {p: metadata.version(p) for p in
                     ("prdc", "torch-fidelity", "scikit-learn", "numpy", "torch")},
        "cases": {},
    }
    for name in RECIPES:
        real, fake = make_case(name)
        case = {"recipe": RECIPES[name], "real_shape": list(real.shape),
                "fake_shape": list(fake.shape),
                "sha256": {"real": sha256(real), "fake": sha256(fake)},
                "prdc": {}, "torch_fidelity_prc": {}}
        for k in (3, 5):
            with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
                values = compute_prdc(real, fake, nearest_k=k)
            case["prdc"][str(k)] = {key: float(v) for key, v in values.items()}
            precision, recall = calculate_precision_recall_full(
                torch.from_numpy(fake), torch.from_numpy(real), neighborhood=k)
            case["torch_fidelity_prc"][str(k)] = {"precision": precision, "recall": recall}
        out["cases"][name] = case

    real, fake = make_case("gaussian")
    kid = {"case": "gaussian", "features_a": "real", "features_b": "fake", "rng_seed": 2020,
           "runs": []}
    for dtype in ("float32", "float64"):
        a = torch.from_numpy(real).to(getattr(torch, dtype))
        b = torch.from_numpy(fake).to(getattr(torch, dtype))
        for subsets, size in ((10, 200), (1, 500)):
            metric = kid_features_to_metric(a, b, kid_subsets=subsets, kid_subset_size=size,
                                            rng_seed=2020, verbose=False, **kernel_kwargs)
            kid["runs"].append({"dtype": dtype, "subsets": subsets, "subset_size": size,
                                "mean": metric["kernel_inception_distance_mean"],
                                "std": metric["kernel_inception_distance_std"]})
    x, y = real[:500].astype(np.float64), fake.astype(np.float64)
    kernels = [kernel_poly(p, q, **kernel_kwargs) for p, q in ((x, x), (x, y), (y, y))]
    kid["full_set_mmd2_float64"] = {
        "features_a": "real[:500]", "features_b": "fake",
        **{est: float(mmd2(kernels[0], kernels[1], kernels[2], mmd_est=est))
           for est in ("unbiased", "u-statistic", "biased")}}
    out["kid"] = kid

    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
