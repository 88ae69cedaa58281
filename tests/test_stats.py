"""Statistics against scipy/statsmodels and hand-computed values on known inputs, plus the
edge cases seeds produce: n = 1, zero variance, diverged runs, shared configurations."""

import math

import numpy as np
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from hpstudy import stats

A = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
B = np.array([3.0, 4.0, 5.0, 6.0, 7.0])


def test_mean_ci_matches_scipy_t_interval():
    values = np.array([0.91, 0.93, 0.88, 0.95])
    mean, sd, lo, hi = stats.mean_ci(values)
    ref = st.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=st.sem(values))
    assert mean == pytest.approx(values.mean())
    assert sd == pytest.approx(values.std(ddof=1))
    assert (lo, hi) == pytest.approx(ref)


def test_mean_ci_n1_and_empty_and_nan():
    assert stats.mean_ci([0.5])[0] == 0.5 and all(map(math.isnan, stats.mean_ci([0.5])[1:]))
    assert all(map(math.isnan, stats.mean_ci([])))
    assert stats.mean_ci([1.0, float("nan"), 3.0])[0] == 2.0  # nan (no result) is skipped


def test_effect_size_textbook_values_and_sign_convention():
    # pooled SD of A and B is sqrt(2.5); d = (mean B - mean A) / sqrt(2.5)
    d, g = stats.effect_size(A, B)
    assert d == pytest.approx(2 / math.sqrt(2.5))
    assert g == pytest.approx(d * (1 - 3 / (4 * 10 - 9)))
    d_lower, _ = stats.effect_size(A, B, sign=-1)  # lower is better: B is worse than A
    assert d_lower == pytest.approx(-d)


def test_compare_matches_scipy_and_the_welch_formula():
    a, b = np.array([0.81, 0.84, 0.80, 0.86]), np.array([0.90, 0.91, 0.93])
    out = stats.compare(a, b)  # level b vs baseline a
    ref = st.ttest_ind(b, a, equal_var=False)
    assert (out["welch_t"], out["welch_p"]) == pytest.approx((ref.statistic, ref.pvalue))
    # Welch by hand: t = diff / sqrt(va/na + vb/nb), Welch-Satterthwaite dof
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (b.mean() - a.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert out["welch_t"] == pytest.approx(t)
    assert out["welch_p"] == pytest.approx(2 * st.t.sf(abs(t), dof))
    mwu = st.mannwhitneyu(b, a, alternative="two-sided")
    assert out["mwu_p"] == pytest.approx(mwu.pvalue)
    assert out["diff"] == pytest.approx(b.mean() - a.mean()) and out["hedges_g"] > 0


def test_compare_zero_variance_and_single_seed_are_not_testable():
    same = stats.compare([0.9, 0.9, 0.9], [0.8, 0.8, 0.8])
    assert math.isnan(same["welch_p"]) and "no seed variance" in same["note"]
    assert same["diff"] == pytest.approx(-0.1)
    one = stats.compare([0.9, 0.91], [0.8])
    assert math.isnan(one["welch_p"]) and "fewer than two" in one["note"]


def test_holm_matches_statsmodels_and_skips_nan():
    p = [0.01, 0.04, float("nan"), 0.03, 0.2]
    ref = multipletests([0.01, 0.04, 0.03, 0.2], alpha=0.05, method="holm")[1]
    out = stats.holm(p)
    assert math.isnan(out[2])
    assert [out[0], out[1], out[3], out[4]] == pytest.approx(list(ref))
    # Holm by hand: sorted p times (m - rank), running max
    assert out[0] == pytest.approx(0.04) and out[3] == pytest.approx(0.09)


def test_omnibus_matches_scipy_and_drops_levels_below_two_seeds():
    samples = {
        "x": np.array([1.0, 1.2, 0.9]),
        "y": np.array([2.0, 2.1, 1.7]),
        "z": np.array([1.5, 1.4, 1.9]),
        "lonely": np.array([5.0]),
    }
    out = stats.omnibus(samples)
    ref_f = st.f_oneway(samples["x"], samples["y"], samples["z"])
    ref_h = st.kruskal(samples["x"], samples["y"], samples["z"])
    assert out["testable"] and out["levels_tested"] == ["x", "y", "z"]
    assert (out["anova_F"], out["anova_p"]) == pytest.approx((ref_f.statistic, ref_f.pvalue))
    assert (out["kruskal_H"], out["kruskal_p"]) == pytest.approx((ref_h.statistic, ref_h.pvalue))
    assert out["n_per_level"] == {"x": 3, "y": 3, "z": 3, "lonely": 1}


def test_omnibus_not_testable_cases():
    assert not stats.omnibus({"a": np.array([1.0]), "b": np.array([2.0])})["testable"]
    flat = stats.omnibus({"a": np.array([1.0, 1.0]), "b": np.array([2.0, 2.0])})
    assert not flat["testable"] and "seed-identical" in flat["note"]
    # zero variance in one level only is fine
    assert stats.omnibus({"a": np.array([1.0, 1.0]), "b": np.array([2.0, 2.5])})["testable"]


def test_spearman_matches_scipy_and_needs_three_values():
    x, y = [16, 16, 32, 32, 64, 64], [0.9, 0.92, 0.85, 0.86, 0.7, 0.75]
    out = stats.spearman(x, y)
    ref = st.spearmanr(x, y)
    assert (out["rho"], out["p"]) == pytest.approx((ref.statistic, ref.pvalue))
    assert "three" in stats.spearman([1, 1, 2, 2], [1, 2, 3, 4])["note"]
    assert "does not vary" in stats.spearman([1, 2, 3], [5, 5, 5])["note"]


def test_identical_configs_names_shared_baselines():
    configs = {
        "a-1": {"config_hash": "h1"},
        "b-1": {"config_hash": "h1"},
        "a-2": {"config_hash": "h2"},
    }
    assert stats.identical_configs(configs) == [["a-1", "b-1"]]
