# Two commands do everything on a fresh machine:
#   make demo   set up, then FID of Fashion-MNIST train vs test (2,000 vs 2,000, tf protocol)
#   make test   set up, then the test suite
.PHONY: setup demo test lint bench

setup:
	./scripts/bootstrap.sh

demo: setup
	.venv/bin/genbench fid fashion-mnist:train fashion-mnist:test --num-images 2000

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check src tests bench
