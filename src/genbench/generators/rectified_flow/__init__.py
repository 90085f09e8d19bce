"""Rectified flows (Liu et al. 2023; 2-rectified flow++, Lee, Lin & Fanti 2024): the
interpolation and training objectives (``objective``). The solvers live in
``genbench.generators.solvers``."""
