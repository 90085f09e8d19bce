# Two commands do everything on a fresh machine:
#   make demo   set up, then sample genbench's shipped 2-rectified flow++ (Fashion-MNIST, one
#               step per image) and score it: FID, PRD, precision/recall (2,000 vs 2,000 test)
#   make test   set up, then the test suite
.PHONY: setup demo test lint bench

setup:
	./scripts/bootstrap.sh

demo: setup
	mkdir -p results
	.venv/bin/genbench sample fmnist-2rfpp -n 2000 -o results/fmnist-2rfpp-2000.npz
	.venv/bin/genbench eval results/fmnist-2rfpp-2000.npz --ref fashion-mnist:test \
		--num-images 2000 --metrics fid,prd,pr

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check src tests bench
