"""Validation statistics against reference implementations and the published formulas."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from synthcohort.core.errors import InvalidInputError
from synthcohort.store.db import SampleState
from synthcohort.validation.collapse import bins_test, normalised_entropy, prdc
from synthcohort.validation.config import ValidationConfig
from synthcohort.validation.copies import authenticity_mask, screen_copies, tail_threshold
from synthcohort.validation.dice import dice_scores
from synthcohort.validation.flags import broken_flags, outlier_flags
from synthcohort.validation.frechet import (
    Whitening,
    fd,
    feature_stats,
    frechet_distance,
    relative_similarity,
)
from synthcohort.validation.kid import kid, mmd2_unbiased
from synthcohort.validation.neighbours import (
    ball_counts,
    knn,
    knn_radii,
    max_correlation,
)
from synthcohort.validation.policy import sample_state
from synthcohort.validation.verdict import (
    FAILED,
    NEEDS_REVIEW,
    NOT_DECISIVE,
    PASSED,
    decide,
    gate,
    info,
)


def gaussian(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, scale, size=(n, d))


def test_fd_of_a_set_with_itself_is_zero_and_grows_with_shift():
    x = gaussian(400, 16, 0)
    assert fd(x, x) == pytest.approx(0.0, abs=1e-6)
    assert fd(x, x + 0.5) == pytest.approx(16 * 0.25, rel=1e-6)  # mean shift only: ||Δμ||²
    assert fd(x, gaussian(400, 16, 1, shift=1.0)) > fd(x, gaussian(400, 16, 2))


def test_fd_equals_torchmetrics_compute_fid():
    from torchmetrics.image.fid import _compute_fid

    x, y = gaussian(300, 24, 3), gaussian(250, 24, 4, shift=0.3, scale=1.3)
    (m1, s1), (m2, s2) = feature_stats(x), feature_stats(y)
    ours = frechet_distance(m1, s1, m2, s2)
    ref = float(_compute_fid(*(torch.from_numpy(a) for a in (m1, s1, m2, s2))))
    assert ours == pytest.approx(ref, abs=1e-3)
    assert ours > 1.0  # a real difference, not two zeros


def test_fd_equals_torchmetrics_fid_module_with_custom_feature_extractor():
    """torchmetrics' FrechetInceptionDistance with our features as its 'feature' network."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Features(torch.nn.Module):  # the "images" are the feature vectors themselves
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(len(x), -1)[:, :12].double()

    x, y = gaussian(200, 12, 5), gaussian(180, 12, 6, shift=0.5)
    metric = FrechetInceptionDistance(feature=Features(), normalize=True)
    metric.update(torch.from_numpy(x).float(), real=True)
    metric.update(torch.from_numpy(y).float(), real=False)
    ref = float(metric.compute())
    assert fd(x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)) == pytest.approx(ref, abs=1e-3)


def test_relative_similarity_separates_real_from_shifted():
    real, hold = gaussian(600, 8, 7), gaussian(300, 8, 8)
    same = relative_similarity(real, gaussian(600, 8, 9), hold, seed=0, bootstrap=50)
    shifted = relative_similarity(real, gaussian(600, 8, 10, shift=0.5), hold, seed=0, bootstrap=50)
    assert same.s_fid >= 0.9 and shifted.s_fid < 0.5
    assert same.ci[0] <= same.s_fid <= same.ci[1]
    few = relative_similarity(real[:20], gaussian(20, 8, 11), hold[:12], seed=0, bootstrap=0)
    assert any("below 2×feature dim" in w for w in few.warnings)


def test_s_fid_interval_holds_the_estimate_for_a_cohort_far_from_real():
    """At small N the raw bootstrap interval of a poor cohort lay above the estimate (duplicates
    from resampling change FD's bias); the re-centred interval holds it and keeps a width."""
    real, hold = gaussian(42, 16, 1), gaussian(42, 16, 2)
    for shift in (0.0, 0.6, 2.0):
        r = relative_similarity(real, gaussian(84, 16, 3, shift=shift), hold, seed=0, bootstrap=200)
        assert r.ci[0] < r.s_fid < r.ci[1], (shift, r.s_fid, r.ci)
        assert r.ci[1] / r.ci[0] > 1.1
    assert r.s_fid < 0.2 and r.ci[1] < 0.5  # far from real: the interval stays far from the threshold


def test_whitening_gives_identity_covariance_and_drops_dead_units():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) * [100, 1, 1, 1, 1, 1] + 3.0
    x = np.concatenate([x, np.full((500, 1), 0.7)], axis=1)  # a dead unit: constant on real images
    w = Whitening.fit(x)
    z = w(x)
    assert w.dim == 6 and z.shape == (500, 6)
    assert np.allclose(z.mean(0), 0, atol=1e-9) and np.allclose(np.cov(z, rowvar=False), np.eye(6), atol=1e-8)
    # a fixed linear map: FD between mapped sets is FD in the Mahalanobis metric of the fitted data,
    # so a shift along a low-variance direction counts as much as one along the dominant one
    a, b = w(x[:250]), w(x[250:])
    shifted = w(x[250:] + np.r_[0, 0, 0, 0, 0, 0.5 * x[:, 5].std(), 0])
    assert fd(a, shifted) > fd(a, b) + 0.2
    with pytest.raises(ValueError):
        Whitening.fit(x[:1])


def test_whitening_steadies_s_fid_when_one_direction_dominates():
    """The case that made S_FID swing on BreastMNIST: one feature with most of the variance.
    Real-vs-real S_FID over 20 draws of N = 42 stays near 1 once whitened."""
    def draw(n, seed):
        g = np.random.default_rng(seed)
        return g.normal(size=(n, 16)) * np.r_[30.0, np.ones(15)]
    w = Whitening.fit(draw(400, 99))
    raw, white = [], []
    for s in range(20):
        ref, cohort, hold = draw(42, 3 * s), draw(42, 3 * s + 1), draw(42, 3 * s + 2)
        raw.append(relative_similarity(ref, cohort, hold, seed=s, bootstrap=0).s_fid)
        white.append(relative_similarity(w(ref), w(cohort), w(hold), seed=s, bootstrap=0).s_fid)
    spread = lambda v: np.percentile(np.log(v), 90) - np.percentile(np.log(v), 10)  # noqa: E731
    assert spread(white) < 0.5 * spread(raw)
    assert np.mean(np.array(white) >= 0.9) > np.mean(np.array(raw) >= 0.9)


def test_kid_matches_torchmetrics_poly_mmd_and_is_unbiased():
    from torchmetrics.image.kid import poly_mmd

    x, y = gaussian(100, 10, 12), gaussian(100, 10, 13, shift=0.4)  # torchmetrics assumes equal sizes
    ref = float(poly_mmd(torch.from_numpy(x), torch.from_numpy(y), degree=3, gamma=None, coef=1.0))
    assert mmd2_unbiased(x, y) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    # naive double loop of Bińkowski et al.'s estimator
    k = lambda a, b: (a @ b / x.shape[1] + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    naive = (sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
             + sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
             - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n))
    assert mmd2_unbiased(x, y) == pytest.approx(naive, rel=1e-9)
    y = y[:70]  # unequal sizes: our estimator keeps the right normalisers
    naive = (sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
             + sum(k(y[i], y[j]) for i in range(70) for j in range(70) if i != j) / (70 * 69)
             - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(70)) / (m * 70))
    assert mmd2_unbiased(x, y) == pytest.approx(naive, rel=1e-9)
    same = kid(gaussian(300, 10, 14), gaussian(300, 10, 15), seed=0, subsets=20, subset_size=100)
    assert same.ci[0] <= 0.0 <= same.ci[1]  # unbiased: straddles zero for equal distributions
    assert kid(x, y, seed=0, subsets=20, subset_size=50).value > same.ci[1]


def naive_prdc(real: np.ndarray, fake: np.ndarray, pr_k: int, dc_k: int) -> dict[str, float]:
    """Direct transcription of Kynkäänniemi et al. 2019 and Naeem et al. 2020."""
    d_rr, d_ff, d_rf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    def radius(d, k):
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself
    r_pr, f_pr, r_dc = radius(d_rr, pr_k), radius(d_ff, pr_k), radius(d_rr, dc_k)
    n, m = len(real), len(fake)
    precision = np.mean([any(d_rf[i, j] < r_pr[i] for i in range(n)) for j in range(m)])
    recall = np.mean([any(d_rf[i, j] < f_pr[j] for j in range(m)) for i in range(n)])
    density = sum(d_rf[i, j] < r_dc[i] for i in range(n) for j in range(m)) / (dc_k * m)
    coverage = np.mean([any(d_rf[i, j] < r_dc[i] for j in range(m)) for i in range(n)])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("shift", [0.0, 0.7])
def test_prdc_matches_naive_published_formulas(shift):
    real, fake = gaussian(150, 6, 20), gaussian(120, 6, 21, shift=shift, scale=0.8)
    ours = prdc(real, fake, pr_k=3, dc_k=5, chunk_bytes=8 * 150 * 7)  # a few rows per chunk
    ref = naive_prdc(real, fake, 3, 5)
    for name, value in ref.items():
        assert getattr(ours, name) == pytest.approx(value, abs=1e-12), name
    if shift:
        assert ours.precision < 1.0 and ours.coverage < naive_prdc(real, gaussian(120, 6, 22), 3, 5)["coverage"]


def test_chunked_neighbours_equal_brute_force():
    q, r = gaussian(57, 5, 30), gaussian(81, 5, 31)
    d_full = cdist(q, r)
    for chunk in (8 * 81, 8 * 81 * 10, 1 << 30):  # one row, ten rows, everything
        d, i = knn(q, r, 3, chunk_bytes=chunk)
        np.testing.assert_allclose(d, np.sort(d_full, 1)[:, :3], atol=1e-10)
        np.testing.assert_array_equal(i[:, 0], d_full.argmin(1))
        radii = np.sort(cdist(r, r), 1)[:, 2]
        np.testing.assert_allclose(knn_radii(r, 2, chunk_bytes=chunk), radii, atol=1e-10)
        np.testing.assert_array_equal(ball_counts(q, r, radii, chunk_bytes=chunk), (d_full < radii[None]).sum(1))
    img_q, img_r = np.random.default_rng(0).random((9, 1, 6, 6)), np.random.default_rng(1).random((14, 1, 6, 6))
    corr, idx = max_correlation(img_q, img_r, chunk_bytes=8 * 14)
    full = np.corrcoef(img_q.reshape(9, -1), img_r.reshape(14, -1))[:9, 9:]
    np.testing.assert_allclose(corr, full.max(1), atol=1e-10)
    np.testing.assert_array_equal(idx, full.argmax(1))


def test_authenticity_is_indexed_by_the_real_neighbour():
    """Alaa et al. 2022: compare d(y, x*) with x*'s own real-to-real distance."""
    train = np.array([[5.0], [5.05], [0.0], [1.0]])
    syn = np.array([[0.6], [-1.5]])
    authentic, idx, dist = authenticity_mask(syn, train)
    assert idx.tolist() == [3, 2]
    # y0: nearest real x3 at 0.4 < x3's nearest real (x2) at 1.0 → not authentic.
    # Indexing by the synthetic sample (row 0 → x0's 0.05) would call it authentic.
    assert authentic.tolist() == [False, True]
    np.testing.assert_allclose(dist, [0.4, 1.5])


def test_planted_copies_are_flagged_in_feature_and_pixel_space():
    rng = np.random.default_rng(0)
    train_px, hold_px = rng.random((300, 1, 8, 8)), rng.random((200, 1, 8, 8))
    syn_px = np.concatenate([rng.random((100, 1, 8, 8)), train_px[[3, 17]]])
    feats = lambda a: a.reshape(len(a), -1)[:, :16]  # noqa: E731
    s = screen_copies(feats(syn_px), feats(train_px), feats(hold_px), syn_px, train_px, hold_px, quantile=0.01)
    assert s.near_copy[100:].all()
    # fresh samples are exchangeable with the hold-out: each crosses one of the two 1% cut-offs
    # with probability about 2%, so a handful at most
    assert s.near_copy[:100].sum() <= 4  # each test at 0.5 %: about 1 % together (Bonferroni)
    assert s.pixel_index[100:].tolist() == [3, 17] and np.allclose(s.pixel_correlation[100:], 1.0)
    assert s.nearest_index[100:].tolist() == [3, 17] and np.allclose(s.feature_distance[100:], 0.0)
    assert not s.authentic[100:].any()


def test_aligned_correlation_finds_shifted_and_mirrored_copies():
    """A memorised image comes back shifted or mirrored; aligned, it correlates like an exact copy."""
    rng = np.random.default_rng(2)
    train = rng.random((30, 1, 16, 16))
    shifted = np.roll(train[[4]], (2, -3), axis=(-2, -1))  # inside the compared centre: an exact match there
    mirrored = np.flip(train[[9]], -1)
    query = np.concatenate([shifted, mirrored, rng.random((5, 1, 16, 16))])
    plain, _ = max_correlation(query, train)
    corr, idx = max_correlation(query, train, max_shift=3, flips=True)
    assert idx[:2].tolist() == [4, 9] and np.allclose(corr[:2], 1.0, atol=1e-5)
    assert plain[:2].max() < 0.5 and corr[2:].max() < 0.6  # random images stay uncorrelated
    same, _ = max_correlation(query, train, max_shift=0, flips=False)
    np.testing.assert_array_equal(same, plain)  # no alignment: the exact comparison
    volumes = rng.random((6, 1, 10, 10, 10))  # 3D: shifts along every axis
    moved = np.roll(volumes[[2]], (1, -1, 2), axis=(-3, -2, -1))
    c3, i3 = max_correlation(moved, volumes, max_shift=2)
    assert i3.tolist() == [2] and c3[0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="leaves nothing"):
        max_correlation(query, train, max_shift=8)


def test_tail_threshold_extrapolates_beyond_a_small_hold_out():
    """32 hold-out values have no 0.5 % quantile of their own; the fitted normal tail supplies it,
    and with many values the empirical quantile and the fit agree."""
    rng = np.random.default_rng(0)
    small, big = np.exp(rng.normal(0, 0.3, 32)), np.exp(rng.normal(0, 0.3, 20000))
    true = float(np.exp(0.3 * -2.5758))  # the 0.5 % quantile of the log-normal
    assert tail_threshold(small, 0.005, upper=False) <= np.quantile(small, 0.005)  # never looser than the data
    assert tail_threshold(small, 0.005, upper=False) == pytest.approx(true, rel=0.15)
    assert tail_threshold(big, 0.005, upper=False) == pytest.approx(true, rel=0.03)
    r = np.tanh(rng.normal(1.0, 0.2, 40))  # correlations: the upper tail, on Fisher's z scale
    assert r.max() < tail_threshold(r, 0.005, upper=True) < 1.0


def test_bins_entropy_detects_collapse():
    real = np.concatenate([gaussian(100, 4, 40, shift=c) for c in (-6, 0, 6)])
    good = bins_test(real, np.concatenate([gaussian(100, 4, 41, shift=c) for c in (-6, 0, 6)]), seed=0, max_bins=10)
    collapsed = bins_test(real, np.repeat(real[:1], 300, 0), seed=0, max_bins=10)
    assert good.k == 10 and good.entropy_ratio > 0.9 and good.different_bins == 0
    assert collapsed.entropy_synthetic == 0.0 and collapsed.entropy_ratio < 0.1 and collapsed.different_bins >= 2
    assert normalised_entropy(np.array([5, 5, 5, 5])) == pytest.approx(1.0)


def test_bins_counts_real_occupancy_in_cells_fitted_elsewhere():
    fit = np.concatenate([gaussian(100, 4, 42, shift=c) for c in (-6, 0, 6)])
    real = np.concatenate([gaussian(20, 4, 43, shift=c) for c in (-6, 0, 6)])  # the unseen reference
    one_mode = gaussian(60, 4, 44, shift=6)
    good = bins_test(real, np.concatenate([gaussian(20, 4, 45, shift=c) for c in (-6, 0, 6)]), seed=0, max_bins=10, cells_from=fit)
    bad = bins_test(real, one_mode, seed=0, max_bins=10, cells_from=fit)
    assert good.k == bad.k == 10  # K from the 300 fitted points, not the 60 counted ones
    assert sum(good.real_counts) == 60 and sum(good.synthetic_counts) == 60
    assert good.entropy_ratio > 0.9 and bad.entropy_ratio < 0.7
    assert bins_test(real, one_mode, seed=0, max_bins=10).k == 6


def test_broken_and_outlier_flags():
    rng = np.random.default_rng(1)
    real = rng.random((20, 1, 8, 8)).astype(np.float32)
    nan = real[0].copy()
    nan[0, 0, 0] = np.nan
    sat = (rng.random((1, 8, 8)) > 0.5).astype(np.float32)
    imgs = np.stack([real[1], nan, np.full((1, 8, 8), 0.3, np.float32), sat])
    kinds = [[f.kind for f in fl] for fl in broken_flags(imgs, real)]
    assert kinds == [[], ["broken"], ["broken"], ["broken"]]
    feats = gaussian(200, 3, 50)
    flags, radius = outlier_flags(np.array([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0]]), feats, k=5)
    assert flags[0] == [] and flags[1][0].kind == "outlier" and flags[1][0].score > 1.0 and radius > 0


def test_dice_scores():
    a = np.zeros((3, 1, 4, 4, 4), np.uint8)
    b = a.copy()
    a[0, 0, :2] = 1
    b[0, 0, :1] = 1  # half of a
    a[1, 0, 0, 0, 0] = 1  # a vs empty
    np.testing.assert_allclose(dice_scores(a, b), [2 * 16 / (32 + 16), 0.0, 1.0])


def test_verdict_rules():
    ok = {"s_fid": gate(0.95, 0.9), "kid": info(0.01)}
    assert decide(ok, [{"index": 0, "flags": []}]).verdict == PASSED
    assert decide(ok, [{"index": 0, "flags": [{"kind": "near_copy", "reason": "r", "score": 1.0}]}]).verdict == NEEDS_REVIEW
    d = decide({**ok, "entropy_ratio": gate(0.5, 0.9)}, [{"index": 0, "flags": []}])
    assert d.verdict == FAILED and "entropy_ratio" in d.reasons[0] and not d.undecided


def test_a_gate_whose_ci_contains_the_threshold_is_not_decisive():
    """The demo's case: S_FID 0.81, CI [0.57, 1.05] at N = 20 goes to a reviewer, not to failed."""
    demo = gate(0.81, 0.90, ci=(0.57, 1.05), n=20)
    assert demo.decisive is False and demo.outcome("point") == "undecided" and demo.outcome("lower_bound") == "fail"
    # half-width 0.24 at a gap of 0.09: N ≈ 20 · (0.24 / 0.09)² ≈ 143
    assert demo.n_to_decide == 143
    assert demo.to_json()["decisive"] is False and demo.to_json()["n_to_decide"] == 143
    samples = [{"index": i, "flags": []} for i in range(3)]
    d = decide({"s_fid": demo, "coverage_ratio": gate(1.0, 0.9)}, samples)
    assert d.verdict == NEEDS_REVIEW and list(d.undecided) == ["s_fid"]
    assert "not decisive at N = 20" in d.reasons[0] and "N ≈ 143" in d.reasons[0]
    d.hold_every_sample(samples)
    assert all(s["flags"][0]["kind"] == NOT_DECISIVE and s["flags"][0]["gate"] == "s_fid" for s in samples)
    assert all(sample_state(d.verdict, s["flags"]) is SampleState.held for s in samples)

    strict = decide({"s_fid": demo}, [{"index": 0, "flags": []}], "lower_bound")
    assert strict.verdict == FAILED and "lower_bound" not in strict.reasons[0]  # below at its value too
    passing_wide = gate(0.95, 0.90, ci=(0.80, 1.10), n=20)
    assert passing_wide.outcome("point") == "pass" and passing_wide.outcome("lower_bound") == "fail"
    d = decide({"s_fid": passing_wide}, [{"index": 0, "flags": []}])
    assert d.verdict == PASSED and any("not decisive at N = 20" in r for r in d.reasons)
    d = decide({"s_fid": passing_wide}, [{"index": 0, "flags": []}], "lower_bound")
    assert d.verdict == FAILED and "lower end" in d.reasons[0] and "0.8" in d.reasons[0]
    decisive_fail = gate(0.5, 0.9, ci=(0.4, 0.6), n=100)
    assert decisive_fail.decisive and decide({"s_fid": decisive_fail}, []).verdict == FAILED
    assert gate(0.5, 0.9).decisive is None and gate(0.5, 0.9).outcome("lower_bound") == "fail"  # no CI: the value
    assert info(0.3, ci=(0.0, 1.0)).outcome() is None and info(0.3).decisive is None


def test_config_errors_name_the_file_and_field(tmp_path):
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"similarity_threshold": 0.8, "utility_seeds": 2}))
    cfg = ValidationConfig.from_json_file(good)
    assert cfg.similarity_threshold == 0.8 and cfg.utility_seeds == 2 and cfg.dice_ratio_threshold == 0.9
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"similarity_treshold": 0.8}))
    with pytest.raises(InvalidInputError, match="similarity_treshold") as exc:
        ValidationConfig.from_json_file(bad)
    assert exc.value.path == str(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        ValidationConfig.from_json_file(broken)


def test_a_perfect_cohorts_s_fid_spread_is_set_by_effective_dimension_not_n():
    """benchmarks/sfid_noise.py's finding, small: perfect cohorts fall below 0.90 far more often when
    the class spreads over 3 directions than over 32, and quadrupling every set does not close the
    gap (the two FDs shrink together). The participation ratio counts the directions."""
    from benchmarks.sfid_noise import participation_ratio, perfect_cohort_sfid

    rng = np.random.default_rng(0)
    assert 9.0 < participation_ratio(rng.standard_normal((4000, 10))) <= 10.0
    assert participation_ratio(rng.standard_normal((4000, 10)) * np.r_[10.0, np.ones(9)]) < 1.2
    below = {(d, k): float(np.mean(perfect_cohort_sfid(d, (128 * k, 64 * k, 64 * k), 60, seed=1) < 0.9))
             for d in (3, 32) for k in (1, 4)}
    assert below[3, 1] > 0.2 and below[3, 4] > 0.2  # N does not help a low-dimensional class
    assert below[32, 1] < 0.15 and below[32, 4] < 0.15
