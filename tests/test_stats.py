"""Statistics against scipy/statsmodels and hand-computed values on known inputs, plus the
edge cases seeds produce: n = 1, zero variance, diverged runs, shared configurations."""

import math

import numpy as np
import pandas as pd
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


def runs_frame(values: dict[str, list], statuses: dict[str, list] | None = None):
    rows = []
    for exp, vals in values.items():
        for seed, v in enumerate(vals):
            status = (statuses or {}).get(exp, ["ok"] * len(vals))[seed]
            rows.append(
                {
                    "experiment": exp,
                    "seed": seed,
                    "status": status,
                    "test_r2": v if status == "ok" else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def group(values, baseline="g-b", statuses=None, factors=None, metric="test_r2"):
    exps = list(values)
    runs = runs_frame(values, statuses)
    if metric != "test_r2":
        runs[metric] = runs.pop("test_r2")
    factors = factors or {e: {"f": "x"} for e in exps}
    names = list(next(iter(factors.values())))
    return stats.group_statistics(
        runs, exps, {e: e.split("-")[1] for e in exps}, names, baseline, metric, factors
    )


def test_verdict_supported_when_anova_and_holm_agree():
    out = group({"g-b": [0.90, 0.91, 0.92], "g-x": [0.70, 0.71, 0.69], "g-y": [0.80, 0.82, 0.81]})
    assert out["verdict"] == "supported"
    assert out["best_level"] == "b" and out["worst_level"] == "x"
    assert all(p["holm_p"] < 0.05 for p in out["pairwise"])
    assert all(p["hedges_g"] < 0 for p in out["pairwise"])  # both worse than the baseline


def test_verdict_within_seed_noise_and_not_supported():
    noise = group({"g-b": [0.90, 0.80, 0.85], "g-x": [0.86, 0.81, 0.88]})
    assert noise["verdict"] == "within seed noise"
    assert noise["max_gap"] < noise["pooled_sd"]
    unclear = group({"g-b": [0.80, 0.84, 0.76], "g-x": [0.90, 0.78, 0.95]})
    assert unclear["verdict"] == "not supported"
    assert unclear["max_gap"] > unclear["pooled_sd"]
    assert unclear["pairwise"][0]["holm_p"] >= 0.05


def test_verdict_not_testable_for_identical_seeds_and_single_runs():
    flat = group({"g-b": [0.9, 0.9, 0.9], "g-x": [0.8, 0.8, 0.8]})
    assert flat["verdict"] == "not testable" and "seed-identical" in flat["evidence"]
    single = group({"g-b": [0.9], "g-x": [0.8]})
    assert single["verdict"] == "not testable"


def test_diverged_runs_are_listed_and_excluded():
    out = group(
        {"g-b": [0.90, 0.91, 0.92], "g-x": [0.5, 0.6, 0.55]},
        statuses={"g-x": ["ok", "diverged", "ok"]},
    )
    assert out["levels"][1]["n"] == 2 and out["levels"][1]["n_not_ok"] == 1
    assert out["not_ok"] == [{"experiment": "g-x", "seed": 1, "status": "diverged"}]
    assert out["omnibus"]["n_per_level"] == {"b": 3, "x": 2}


def test_lower_is_better_metric_flips_effect_sign_and_best_level():
    out = group({"g-b": [10.0, 11.0, 12.0], "g-x": [20.0, 21.0, 22.0]}, metric="test_mse")
    assert out["best_level"] == "b" and not out["higher_is_better"]
    assert out["pairwise"][0]["diff"] == pytest.approx(10.0)
    assert out["pairwise"][0]["hedges_g"] < 0  # x has the higher MSE: worse


def test_numeric_factor_gets_spearman_over_runs():
    values = {"g-b": [0.9, 0.91, 0.92], "g-x": [0.8, 0.82, 0.81], "g-y": [0.7, 0.71, 0.69]}
    factors = {"g-b": {"batch_size": 16}, "g-x": {"batch_size": 32}, "g-y": {"batch_size": 64}}
    out = group(values, factors=factors)
    ref = st.spearmanr([16] * 3 + [32] * 3 + [64] * 3, sum(values.values(), []))
    assert out["spearman"]["batch_size"]["rho"] == pytest.approx(ref.statistic)
    text = group(values, factors={e: {"f": s} for e, s in zip(values, "abc", strict=True)})
    assert text["spearman"] == {}


def test_performers_dedupe_shared_configs_and_name_what_they_share():
    levels = [
        {"experiment": e, "mean": m}
        for e, m in [("a-1", 0.9), ("b-1", 0.9), ("a-2", 0.85), ("a-3", 0.5), ("b-2", 0.4)]
    ]
    configs = {
        "a-1": {"config_hash": "h1", "lr": 1e-3, "bs": 16},
        "b-1": {"config_hash": "h1", "lr": 1e-3, "bs": 16},
        "a-2": {"config_hash": "h2", "lr": 1e-3, "bs": 32},
        "a-3": {"config_hash": "h3", "lr": 1e-2, "bs": 32},
        "b-2": {"config_hash": "h4", "lr": 1e-2, "bs": 64},
    }
    out = stats.performers(levels, configs, "test_r2")
    assert [r["experiment"] for r in out["top"]] == ["a-1"]
    assert out["aliases"] == {"a-1": ["b-1"]}
    assert out["top_share"] == {"bs": 16, "lr": 1e-3}
    assert stats.identical_configs(configs) == [["a-1", "b-1"]]
