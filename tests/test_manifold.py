"""Blocked k-NN precision/recall/density/coverage against prdc 0.2 (strict ``<``) and
torch-fidelity 0.4.0's improved P/R (``<=``), frozen by bench/prdc_kid_reference.py in
tests/data/prdc_kid_reference.json, plus behaviour on ties, blocking and bad input."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genbench.errors import GenbenchError
from genbench.metrics import manifold
from genbench.metrics.manifold import density_coverage, knn_radii, prdc, precision_recall

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = json.loads((ROOT / "tests" / "data" / "prdc_kid_reference.json").read_text())
_spec = importlib.util.spec_from_file_location("prdc_kid_reference",
                                               ROOT / "bench" / "prdc_kid_reference.py")
recipes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recipes)  # make_case only; the peers are imported in its main()

CASES = list(REFERENCE["cases"])
METRICS = ("precision", "recall", "density", "coverage")


@pytest.fixture(scope="module")
def features():
    out = {}
    for name, case in REFERENCE["cases"].items():
        real, fake = recipes.make_case(name)
        assert recipes.sha256(real) == case["sha256"]["real"], f"{name}: features changed"
        assert recipes.sha256(fake) == case["sha256"]["fake"], f"{name}: features changed"
        out[name] = real, fake
    return out


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("case", CASES)
def test_equals_prdc(features, case, k):
    real, fake = features[case]
    ours = prdc(real, fake, nearest_k=k).to_dict()
    theirs = REFERENCE["cases"][case]["prdc"][str(k)]
    for name in METRICS:
        assert abs(ours[name] - theirs[name]) <= 1e-6, f"{case} k={k} {name}"


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("case", CASES)
def test_precision_recall_equals_torch_fidelity(features, case, k):
    real, fake = features[case]
    ours = precision_recall(real, fake, nearest_k=k)  # default comparison "<="
    theirs = REFERENCE["cases"][case]["torch_fidelity_prc"][str(k)]
    assert ours.comparison == "<="
    assert abs(ours.precision - theirs["precision"]) <= 1e-6
    assert abs(ours.recall - theirs["recall"]) <= 1e-6


def test_comparison_matters_on_exact_ties(features):
    """Quantized features with duplicates: the peers' two conventions give different values,
    and each is reproduced only with its own comparison."""
    real, fake = features["quantized_duplicates"]
    strict = precision_recall(real, fake, 3, comparison="<")
    ref = REFERENCE["cases"]["quantized_duplicates"]
    assert strict.precision == pytest.approx(ref["prdc"]["3"]["precision"], abs=1e-6)
    assert abs(strict.precision - ref["torch_fidelity_prc"]["3"]["precision"]) > 0.05
    dc = density_coverage(real, fake, 5)
    assert (dc.density, dc.coverage) == pytest.approx(
        (ref["prdc"]["5"]["density"], ref["prdc"]["5"]["coverage"]), abs=1e-6)


@pytest.mark.parametrize("case", ["gaussian", "quantized_duplicates", "identical"])
def test_block_size_does_not_change_results(features, case):
    real, fake = features[case]
    real, fake = real[:160], fake[:140]  # block size 7: ~500 tiles per pass
    n = max(len(real), len(fake))
    for comparison in ("<", "<="):
        results = {bs: prdc(real, fake, 3, comparison=comparison, block_size=bs)
                   for bs in (7, 64, n)}
        assert results[7] == results[64] == results[n], comparison


@pytest.mark.parametrize("dtype", ["mixed", "float64"])
def test_tiles_stay_within_block(monkeypatch, features, dtype):
    """Nothing larger than block_size × block_size is computed."""
    real, fake = features["gaussian"]
    shapes = []
    tile64, tile32 = manifold._squared_distance_tile, manifold._Screen.tile

    def recording64(x, xx, y, yy):
        shapes.append((x.shape[0], y.shape[0]))
        return tile64(x, xx, y, yy)

    def recording32(self, rows, other, cols):
        out = tile32(self, rows, other, cols)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(manifold, "_squared_distance_tile", recording64)
    monkeypatch.setattr(manifold._Screen, "tile", recording32)
    prdc(real, fake, 5, block_size=100, dtype=dtype)
    assert shapes and max(a * b for a, b in shapes) <= 100 * 100


@pytest.fixture(params=["bfloat16", "float32"])
def screen(request, monkeypatch):
    """Run "mixed" with bfloat16 screening (where this CPU has it natively) and float32."""
    if request.param == "float32":
        monkeypatch.setattr(manifold, "fast_bfloat16", lambda device: False)
    elif not manifold.fast_bfloat16(torch.device("cpu")):
        pytest.skip("no native bfloat16 matmul on this CPU")
    return request.param


@pytest.mark.parametrize("case", CASES)
def test_mixed_equals_float64(features, case, screen):
    """Screened tiles + exact rechecks decide every pair as the all-float64 computation."""
    real, fake = features[case]
    for comparison in ("<", "<="):
        for k in (1, 3, 5):
            exact = prdc(real, fake, k, comparison=comparison, dtype="float64", block_size=64)
            for bs in (7, 64):
                mixed = prdc(real, fake, k, comparison=comparison, block_size=bs)
                assert mixed == exact, (case, comparison, k, bs)


def test_mixed_exact_paths(monkeypatch, features):
    """With a huge float32 error bound every pair and every k-NN ranking is undecided: the
    radii come from one symmetric exact pass per set and every cross tile is computed
    exactly as one GEMM tile. The result must still equal float64."""
    real, fake = features["gaussian"]
    exact = prdc(real, fake, 3, dtype="float64", block_size=64)
    passes, tiles = [], []
    radii, tile = manifold._kth_radii_exact, manifold._squared_distance_tile

    def recording_radii(x, k, block_size, dtype=None):
        assert dtype == torch.float64
        passes.append(x.shape[0])
        return radii(x, k, block_size, dtype)

    def recording_tile(x, xx, y, yy):
        tiles.append((x.shape[0], y.shape[0]))
        return tile(x, xx, y, yy)

    monkeypatch.setattr(manifold, "_kth_radii_exact", recording_radii)
    monkeypatch.setattr(manifold, "_squared_distance_tile", recording_tile)
    monkeypatch.setattr(manifold, "_screen_tolerance", lambda dtype, dim, eps: 1.0)
    assert prdc(real, fake, 3, block_size=64) == exact
    assert sorted(passes) == sorted([len(real), len(fake)])
    # the cross pass: one exact tile per fake × real block (the radii passes' tiles beside)
    cross = -(-len(fake) // 64) * -(-len(real) // 64)
    per_set = sum(-(-n // 64) * (-(-n // 64) + 1) // 2 for n in (len(real), len(fake)))
    assert len(tiles) == cross + per_set


def test_mixed_concentrated_distances(monkeypatch):
    """Independent coordinates, fakes spread wider (a badly failing model: P = 0, R = 1):
    every real lies in almost every fake ball, so the fake balls' tiles are settled densely
    (sure hits by comparison, no exact tile), and the result equals float64."""
    rng = np.random.default_rng(11)
    real = rng.standard_normal((300, 256)).astype(np.float32)
    fake = 1.5 * rng.standard_normal((300, 256)).astype(np.float32)
    monkeypatch.setattr(manifold, "fast_bfloat16", lambda device: False)
    exact = {c: prdc(real, fake, 5, comparison=c, dtype="float64", block_size=64)
             for c in ("<", "<=")}
    kinds, exact_tiles = [], []
    tile_hits, tile = manifold._Balls.tile_hits, manifold._squared_distance_tile

    def recording(self, *args):
        hits = tile_hits(self, *args)
        kinds.append("dense" if hits.dense is not None else "sparse")
        return hits

    monkeypatch.setattr(manifold._Balls, "tile_hits", recording)
    for comparison in ("<", "<="):
        result = prdc(real, fake, 5, comparison=comparison, block_size=64)
        assert result == exact[comparison]
        assert (result.precision, result.recall) == (0.0, 1.0)
    monkeypatch.setattr(manifold, "_squared_distance_tile",
                        lambda *a: exact_tiles.append(1) or tile(*a))
    prdc(real, fake, 5, block_size=64)
    assert "dense" in kinds and "sparse" in kinds
    assert exact_tiles == []  # no exact GEMM tile anywhere (cross pass or radii)


def test_mixed_redoes_only_unproven_rows(monkeypatch):
    """A tight cluster of near-copies (more than k + extra within the screen's error, none
    at distance 0) cannot be ranked from the candidates kept: those rows (and the few whose
    nearest candidates are all cluster members) are redone in float64, the others are
    proved from the screen, and the result equals float64."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((200, 32))
    cluster = base[0] + 1e-7 * rng.standard_normal((12, 32))
    real = np.concatenate([base, cluster])
    fake = rng.standard_normal((150, 32))
    monkeypatch.setattr(manifold, "fast_bfloat16", lambda device: False)
    redone = []
    redo = manifold._kth_radii_of_rows

    def recording(x, rows, k, block_size, dtype=None, **kw):
        redone.extend(rows.tolist())
        return redo(x, rows, k, block_size, dtype, **kw)

    monkeypatch.setattr(manifold, "_kth_radii_of_rows", recording)
    assert prdc(real, fake, 3) == prdc(real, fake, 3, dtype="float64")
    assert set(range(200, 212)) <= set(redone) and len(redone) < 0.15 * len(real)


def test_bfloat16_probe_falls_back_to_float32(monkeypatch, features):
    """If the matmul's errors break the bound (say, bfloat16 accumulation), the probe sees it
    and screening falls back to float32; the results stay exact."""
    real, fake = features["gaussian"]
    monkeypatch.setattr(manifold, "fast_bfloat16", lambda device: True)
    tile = manifold._Screen.tile

    def sloppy(self, rows, other, cols):
        d2 = tile(self, rows, other, cols)
        return d2 * 1.05 if self.dtype == torch.bfloat16 else d2

    monkeypatch.setattr(manifold._Screen, "tile", sloppy)
    used = []
    kth = manifold._kth_radii_mixed
    monkeypatch.setattr(manifold, "_kth_radii_mixed",
                        lambda s, *a: used.append(s.dtype) or kth(s, *a))
    assert prdc(real, fake, 3) == prdc(real, fake, 3, dtype="float64")
    assert used == [torch.float32, torch.float32]


def test_float32_outward_rounds_away_from_the_decision():
    values = torch.tensor([1.0, 1.0 + 1e-12, 1.0 - 1e-12, -3.3e-9, 0.0, 3e38, 1e39],
                          dtype=torch.float64)
    up = manifold._float32_outward(values, up=True)
    down = manifold._float32_outward(values, up=False)
    assert up.dtype == down.dtype == torch.float32
    assert bool((up.double() >= values).all()) and bool((down.double() <= values).all())
    # each is the nearest float32 on its side: one step further is on the other side
    inf = torch.tensor(float("inf"))
    assert bool((torch.nextafter(up, -inf).double() < values).all())
    assert bool((torch.nextafter(down, inf).double() > values).all())
    exact = values[[0, 4]]
    assert torch.equal(manifold._float32_outward(exact, up=True).double(), exact)
    assert torch.equal(manifold._float32_outward(exact, up=False).double(), exact)


def test_mixed_many_duplicates(screen, monkeypatch):
    """More copies of a point than k + extra candidates: the ranking cannot be proved from
    the candidates kept, but k + 1 of them re-measured at distance 0 prove a radius of 0 (as
    in prdc), so no row is redone."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 16))
    real = np.repeat(base, 20, axis=0)
    fake = np.concatenate([base[:10], rng.standard_normal((30, 16))])
    exact = {c: prdc(real, fake, 5, comparison=c, dtype="float64") for c in ("<", "<=")}
    redo, exact_pass = manifold._kth_radii_of_rows, manifold._kth_radii_exact
    redone = []
    monkeypatch.setattr(manifold, "_kth_radii_of_rows",
                        lambda x, rows, *a, **kw: redone.append(rows.numel())
                        or redo(x, rows, *a, **kw))
    monkeypatch.setattr(manifold, "_kth_radii_exact",
                        lambda x, *a: redone.append(x.shape[0]) or exact_pass(x, *a))
    for comparison in ("<", "<="):
        assert prdc(real, fake, 5, comparison=comparison) == exact[comparison]
    assert np.all(knn_radii(real, 5) == 0)
    assert redone == []


@pytest.mark.parametrize("k", [3, 5])
def test_identical_sets(features, k):
    """No duplicates: every sample is in its own ball (distance 0 < radius). The k-th neighbour
    sits exactly on the boundary, so density is 1 with "<" and (k+1)/k with "<="."""
    real, _ = features["identical"]
    strict = prdc(real, real.copy(), k, comparison="<")
    loose = prdc(real, real.copy(), k, comparison="<=")
    assert (strict.precision, strict.recall, strict.coverage) == (1.0, 1.0, 1.0)
    assert (loose.precision, loose.recall, loose.coverage) == (1.0, 1.0, 1.0)
    assert strict.density == pytest.approx(1.0, abs=1e-12)
    assert loose.density == pytest.approx((k + 1) / k, abs=1e-12)


def test_identical_sets_with_duplicates_prdc_issue_7():
    """Each point 4 times, k = 3: every radius is 0. With prdc's strict "<" no sample is inside
    any ball, so identical sets score 0 on all four (prdc issue #7); with "<=" they score 1, and
    density counts the 4 copies: 4/3."""
    base = np.random.default_rng(5).standard_normal((50, 8))
    real = np.repeat(base, 4, axis=0)
    fake = real[::-1].copy()
    strict = prdc(real, fake, 3, comparison="<")
    loose = prdc(real, fake, 3, comparison="<=")
    assert strict.to_dict() == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    assert (loose.precision, loose.recall, loose.coverage) == (1.0, 1.0, 1.0)
    assert loose.density == pytest.approx(4 / 3, abs=1e-12)
    # with k = 5 the radius reaches past the copies and both conventions see the sets as equal
    assert prdc(real, fake, 5, comparison="<").precision == 1.0


def test_knn_radii_against_brute_force():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 20))
    x[10] = x[11] = x[12] = x[13]  # four copies: radius 0 for k = 3, not for k = 4
    full = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    for k in (3, 4, 5):
        expected = np.sort(full, axis=1)[:, k]  # (k+1)-th smallest, self included
        got = knn_radii(x, k, block_size=37)
        np.testing.assert_allclose(got, expected, rtol=1e-7, atol=0)
    assert knn_radii(x, 3)[10] == 0.0 and knn_radii(x, 4)[10] > 0.0


def test_definitions_against_brute_force():
    """Small sets, k = 2: the four values from the full distance matrices, written out."""
    rng = np.random.default_rng(4)
    real, fake = rng.standard_normal((40, 5)), rng.standard_normal((30, 5)) + 0.3
    k = 2

    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    r_real = np.sort(dist(real, real), axis=1)[:, k]
    r_fake = np.sort(dist(fake, fake), axis=1)[:, k]
    d = dist(real, fake)  # real × fake
    expected = {
        "precision": (d < r_real[:, None]).any(axis=0).mean(),
        "recall": (d < r_fake[None, :]).any(axis=1).mean(),
        "density": (d < r_real[:, None]).sum(axis=0).mean() / k,
        "coverage": (d.min(axis=1) < r_real).mean(),
    }
    ours = prdc(real, fake, k, block_size=8).to_dict()
    for name in METRICS:
        assert ours[name] == pytest.approx(expected[name], abs=1e-12), name


def test_float32_distances_match_on_reference_cases(features):
    for case in ("gaussian", "quantized_duplicates"):
        real, fake = features[case]
        for k in (3, 5):
            ours = prdc(real, fake, k, dtype="float32").to_dict()
            theirs = REFERENCE["cases"][case]["prdc"][str(k)]
            for name in METRICS:
                assert abs(ours[name] - theirs[name]) <= 1e-6, f"{case} k={k} {name}"


def test_torch_input_and_result_fields(features):
    real, fake = features["gaussian"]
    a = prdc(torch.from_numpy(real), torch.from_numpy(fake).double(), 5)
    assert a == prdc(real, fake, 5)
    assert (a.nearest_k, a.comparison) == (5, "<")
    dc = density_coverage(real, fake)
    assert (dc.nearest_k, dc.comparison) == (5, "<")
    assert (dc.density, dc.coverage) == (a.density, a.coverage)


def test_density_coverage_accepts_few_fake_samples():
    rng = np.random.default_rng(6)
    real = rng.standard_normal((50, 4))
    dc = density_coverage(real, real[:2] + 1e-3, nearest_k=5)
    assert dc.coverage >= 2 / 50 and dc.density > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu(features):
    for case in CASES:
        real, fake = features[case]
        for comparison in ("<", "<="):
            cpu = prdc(real, fake, 3, comparison=comparison, block_size=128)
            gpu = prdc(real, fake, 3, comparison=comparison, block_size=128, device="cuda")
            assert gpu == cpu, (case, comparison)


@pytest.mark.parametrize("real_shape, fake_shape, kwargs, message", [
    ((20, 4), (20, 5), {}, "dimension 4 but fake features have 5"),
    ((20, 4), (20, 4), {"nearest_k": 20}, "needs more than 20 real samples"),
    ((20, 4), (5, 4), {"nearest_k": 5}, "needs more than 5 fake samples"),
    ((0, 4), (20, 4), {}, "real features is empty"),
    ((20, 4), (20, 0), {}, "fake features is empty"),
    ((20,), (20, 4), {}, "must be a 2-D"),
    ((20, 4), (20, 4), {"nearest_k": 0}, "nearest_k must be a positive integer"),
    ((20, 4), (20, 4), {"nearest_k": 2.0}, "nearest_k must be a positive integer"),
    ((20, 4), (20, 4), {"comparison": "<<"}, "comparison must be '<' (prdc) or '<='"),
    ((20, 4), (20, 4), {"block_size": 0}, "block_size must be a positive integer"),
    ((20, 4), (20, 4), {"dtype": "float16"}, "dtype must be 'mixed', 'float64' or 'float32'"),
])
def test_errors(real_shape, fake_shape, kwargs, message):
    rng = np.random.default_rng(0)
    kwargs = {"nearest_k": 3, **kwargs}
    with pytest.raises(GenbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prdc(rng.standard_normal(real_shape), rng.standard_normal(fake_shape), **kwargs)


def test_non_finite_features_rejected():
    x = np.ones((10, 3))
    x[2, 1] = np.nan
    with pytest.raises(GenbenchError, match="fake features contains NaN"):
        prdc(np.zeros((10, 3)), x, 3)
    with pytest.raises(GenbenchError, match="needs more than 3 samples"):
        knn_radii(np.zeros((3, 2)), 3)
    # finite features whose sum overflows float32 are finite: the one-pass check defers to
    # the entry-by-entry one, which accepts them (and the float64 path computes)
    big = (3e38 * np.random.default_rng(0).uniform(0.5, 1.0, (10, 3))).astype(np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(big.sum())
    big[1, 1] = np.inf
    with pytest.raises(GenbenchError, match="real features contains NaN or infinite"):
        prdc(big, big, 3)
    big[1, 1] = 3e38
    assert prdc(big, big, 3) == prdc(big, big, 3, dtype="float64")


def test_exact_pair_distances_in_chunks_and_empty(monkeypatch):
    """Pairs run through reused buffers a chunk at a time: a last, partial chunk and an empty
    request give what the direct float64 computation gives."""
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.standard_normal((50, 16)).astype(np.float32))
    y = torch.from_numpy(rng.standard_normal((40, 16)).astype(np.float32))
    rows = torch.from_numpy(rng.integers(0, 50, 23))
    cols = torch.from_numpy(rng.integers(0, 40, 23))
    monkeypatch.setattr(manifold, "_EXACT_PAIR_ELEMENTS", 5 * 16)  # chunks of 5 pairs
    got = manifold._exact_pair_distances(x, y, rows, cols)
    direct = ((x[rows].double() - y[cols].double()) ** 2).sum(dim=1)
    assert got.dtype == torch.float64 and torch.allclose(got, direct, rtol=1e-15, atol=0)
    assert manifold._exact_pair_distances(x, y, rows[:0], cols[:0]).shape == (0,)


@pytest.mark.parametrize("scale", [1e20, 1e-20])
def test_mixed_outside_the_screens_range_equals_float64(scale):
    """Features whose squared norms overflow (or underflow) float32 cannot be screened in it:
    the float64 path is taken and the values stay exact (the screen once gave density 13
    instead of 0.76 at 1e20)."""
    rng = np.random.default_rng(0)
    real = (rng.standard_normal((300, 8)) * scale).astype(np.float32)
    fake = (rng.standard_normal((300, 8)) * scale + 0.1 * scale).astype(np.float32)
    exact = prdc(real, fake, 5, dtype="float64")
    assert prdc(real, fake, 5) == exact
    assert 0.5 < exact.density < 1.5
    assert np.array_equal(knn_radii(real, 5), knn_radii(real, 5, dtype="float64"))
