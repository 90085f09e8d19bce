"""Would a low-rank screen cut the k-NN metrics' arithmetic? A measurement, not a method.

On a CPU without native bfloat16 the mixed-precision k-NN pass is bound by its float32 GEMMs
(two self passes at half cost plus one cross pass: 3.3 TFLOP at N = 20,000, d = 2048), so a
larger speed-up needs fewer flops. The rigorous cheap bound we tried: project x − μ on r
principal directions (p) and keep the residual norm e; then
||p_x − p_y||² + (e_x − e_y)² ≤ ||x − y||² ≤ ||p_x − p_y||² + (e_x + e_y)², from a rank-r GEMM.
The radii need, per row, the (k+1)-th exact distance below the m-th smallest lower bound
(then the m kept candidates prove the radius); the cross pass needs the bounds to leave few
pairs undecided at the balls' radii. This reports, per rank, the residual's share of the
spread, the fraction of rows the m kept candidates prove, and the fraction of fake × real pairs
left undecided by the real balls, on the first ``--rows`` rows against all:

    .venv/bin/python bench/prdc_projection_probe.py --family spread --n 8000
    .venv/bin/python bench/prdc_projection_probe.py --family files --files R.npy F.npy --n 10000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from prdc_speed import FAMILIES, make_features


def principal_basis(sample: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    mean = sample.mean(dim=0)
    _, _, vh = torch.linalg.svd(sample - mean, full_matrices=False)
    return mean, vh[:rank].T


def project(x: torch.Tensor, mean: torch.Tensor, q: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    c = x - mean
    p = c @ q
    return p, ((c * c).sum(1) - (p * p).sum(1)).clamp_min(0).sqrt()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=FAMILIES, default="spread")
    parser.add_argument("--files", nargs=2)
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--ranks", default="256,512,1024")
    parser.add_argument("--keep", default="32,64")
    parser.add_argument("--json")
    args = parser.parse_args()

    real, fake = (torch.from_numpy(np.ascontiguousarray(a)).double() for a in
                  make_features(args.n, args.dim, family=args.family,
                                files=tuple(args.files) if args.files else None))
    rows = slice(0, args.rows)
    d_real = torch.cdist(real[rows], real).square()
    radius2 = d_real.kthvalue(args.k + 1, dim=1).values            # real balls, first rows
    radius2_all = torch.cat([torch.cdist(real[i:i + 1000], real).square()
                             .kthvalue(args.k + 1, dim=1).values
                             for i in range(0, real.shape[0], 1000)])
    d_cross = torch.cdist(fake[rows], real).square()               # fake × real
    sample = torch.cat([real[::max(1, args.n // 2048)], fake[::max(1, args.n // 2048)]])
    out = {"family": args.family, "files": args.files, "n": args.n, "k": args.k,
           "rows": args.rows, "median_radius2": float(radius2.median()),
           "median_cross_distance2": float(d_cross.median()), "ranks": {}}
    for rank in (int(r) for r in args.ranks.split(",")):
        mean, q = principal_basis(sample, rank)
        (p_r, e_r), (p_f, e_f) = project(real, mean, q), project(fake, mean, q)
        spread = ((real - mean).square().sum() + (fake - mean).square().sum())
        lower_self = torch.cdist(p_r[rows], p_r).square() + (e_r[rows, None] - e_r[None]) ** 2
        proven = {str(m): float((lower_self.topk(m, dim=1, largest=False).values[:, -1]
                                 > radius2).double().mean())
                  for m in (int(v) for v in args.keep.split(","))}
        proj = torch.cdist(p_f[rows], p_r).square()
        lower = proj + (e_f[rows, None] - e_r[None]) ** 2
        upper = proj + (e_f[rows, None] + e_r[None]) ** 2
        undecided = (lower <= radius2_all[None]) & (upper >= radius2_all[None])
        out["ranks"][str(rank)] = {
            "residual_share": float((e_r.square().sum() + e_f.square().sum()) / spread),
            "rows_proven_by_m_candidates": proven,
            "cross_pairs_undecided": float(undecided.double().mean()),
            "cross_pairs_inside": float((d_cross < radius2_all[None]).double().mean())}
        print(rank, json.dumps(out["ranks"][str(rank)]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
