"""Analysis v3 (issues 10, 20): the statistics against statsmodels/scipy on known inputs, and
properties on seed-level data with known truth. The tests never restate the verdict rule:
they build data whose answer is known (a reversed effect, a null effect, shuffled levels, a
known factorial structure, identical runs, a failed seed) and check the verdict names it.
The issue's scenarios, simulated, are in tests/test_analysis_scenarios.py."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttost_ind, ttost_paired

from hpstudy import analysis
from hpstudy.analysis import design, inference, power


def make_study(
    groups: dict,
    values: dict,
    metric: str = "test_r2",
    sesoi: float | None = 0.01,
    statuses: dict | None = None,
    extra: dict | None = None,
):
    """A summary frame and a study.json-like document. `groups[name]` = {kind, factors,
    levels: {label: {factor: value}}, expect, contrasts, baseline}; `values[(group, label)]`
    = one metric value per seed (None = the run did not finish)."""
    doc = {"metric": metric, "sesoi": sesoi, "groups": {}, "experiments": []}
    rows = []
    for name, g in groups.items():
        exps = []
        for label, settings in g["levels"].items():
            exp = f"{name}-{label}"
            exps.append(exp)
            doc["experiments"].append(
                {
                    "experiment": exp,
                    "group": name,
                    "label": label,
                    "config_hash": repr(sorted(settings.items())),
                    **settings,
                }
            )
            for seed, v in enumerate(values[(name, label)]):
                status = (statuses or {}).get(
                    (name, label, seed), "ok" if v is not None else "diverged"
                )
                rows.append(
                    {
                        "experiment": exp,
                        "group": name,
                        "label": label,
                        "seed": seed,
                        "status": status,
                        metric: math.nan if v is None else v,
                        **settings,
                        **(extra or {}).get((name, label), {}),
                    }
                )
        doc["groups"][name] = {
            "question": g.get("question", ""),
            "factors": g["factors"],
            "kind": g.get("kind", "grid"),
            "experiments": exps,
            "baseline": f"{name}-{g['baseline']}" if g.get("baseline") else None,
            "expect": g.get("expect", {}),
            "contrasts": g.get("contrasts", []),
        }
    return pd.DataFrame(rows), doc


def two_levels(a, b, expect="a_better", sesoi=0.01, metric="test_r2", statuses=None):
    groups = {
        "g": {
            "kind": "list",
            "factors": ["x"],
            "levels": {"a": {"x": 1}, "b": {"x": 2}},
            "contrasts": [{"name": "ab", "a": "a", "b": "b", "expect": expect}],
        }
    }
    summary, doc = make_study(
        groups, {("g", "a"): list(a), ("g", "b"): list(b)}, metric, sesoi, statuses
    )
    out = analysis.analyse_study(summary, doc)
    return out["verdicts"].set_index("contrast").loc["ab"], out


def test_reversed_data_is_contradicted_and_lower_is_better_flips_direction():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.005, 4)
    good, bad = 0.95 + base + rng.normal(0, 0.003, 4), 0.80 + base + rng.normal(0, 0.003, 4)
    assert two_levels(good, bad)[0]["verdict"] == "supported"
    row = two_levels(bad, good)[0]
    assert row["verdict"] == "contradicted" and row["estimate"] < 0
    # lower is better (MSE): a's smaller MSE is "a better"
    assert two_levels(1 - good, 1 - bad, metric="test_mse")[0]["verdict"] == "supported"
    assert two_levels(1 - bad, 1 - good, metric="test_mse")[0]["verdict"] == "contradicted"
    # without a prediction: differs, either way; relevant (far outside +/- sesoi)
    row = two_levels(bad, good, expect="")[0]
    assert row["verdict"] == "differs" and row["relevance"] == "relevant"


def test_null_effect_with_tight_seeds_is_no_relevant_effect():
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0, 0.02, 5)
    a = 0.9 + seed_effect + rng.normal(0, 0.001, 5)
    b = 0.9 + seed_effect + rng.normal(0, 0.001, 5)
    for expect in ("a_better", "equal", ""):
        assert two_levels(a, b, expect=expect)[0]["verdict"] == "no relevant effect"
    # the same data without a sesoi cannot claim equivalence
    row = two_levels(a, b, expect="equal", sesoi=None)[0]
    assert row["verdict"] == "inconclusive" and "no sesoi" in row["evidence"]


def test_noisy_small_effect_is_inconclusive_with_seeds_needed():
    a, b = [0.90, 0.95, 0.85], [0.89, 0.93, 0.88]
    row = two_levels(a, b)[0]
    assert row["verdict"] == "inconclusive"
    d = np.subtract(a, b)
    from statsmodels.stats.power import TTestPower

    ref = TTestPower().solve_power(0.01 / d.std(ddof=1), alpha=0.05, power=0.8)
    assert row["seeds_needed"] == math.ceil(ref)
    assert row["alpha_used"] == pytest.approx(0.05)


def test_seeds_needed_use_the_holm_share_and_the_last_look():
    """Two contrasts in one family, neither rejected: each faces alpha / 2, and a sequential
    look's seeds are for its last look's level."""
    from statsmodels.stats.power import TTestPower

    rng = np.random.default_rng(4)
    vals = {("g", k): list(0.9 + rng.normal(0, 0.02, 4)) for k in "abc"}
    g = {
        "kind": "list",
        "factors": ["x"],
        "levels": {k: {"x": i} for i, k in enumerate("abc")},
        "contrasts": [
            {"name": "ab", "a": "a", "b": "b", "expect": "a_better"},
            {"name": "cb", "a": "c", "b": "b", "expect": "a_better"},
        ],
    }
    summary, doc = make_study({"g": g}, vals)
    rows = analysis.analyse_study(summary, doc, alpha=0.01, alpha_final=0.04)["verdicts"]
    row = rows.set_index("contrast").loc["ab"]
    assert row["verdict"] == "inconclusive" and row["alpha_used"] == pytest.approx(0.005)
    d = np.subtract(vals[("g", "a")], vals[("g", "b")])
    ref = TTestPower().solve_power(0.01 / d.std(ddof=1), alpha=0.04 / 2, power=0.8)
    assert row["seeds_needed"] == math.ceil(ref)
    assert power.seeds_needed(d.std(ddof=1), 0.01, 0.02, paired=True) == math.ceil(ref)


def test_identical_runs_are_identical_by_construction_and_a_failed_seed_breaks_it():
    vals = [0.91, 0.87, 0.93]
    row, _ = two_levels(vals, vals, expect="equal")
    assert row["verdict"] == "identical by construction"
    group = {
        "g": {
            "kind": "list",
            "factors": ["nw"],
            "levels": {f"nw{k}": {"nw": k} for k in (0, 2, 4)},
            "expect": {"none": True},
        }
    }
    summary, doc = make_study(group, {("g", f"nw{k}"): vals for k in (0, 2, 4)})
    verdicts = analysis.analyse_study(summary, doc)["verdicts"]
    assert verdicts.loc[0, "verdict"] == "identical by construction"
    # the example: b diverged where a finished - the settings did change the outcome
    row, _ = two_levels(vals, [0.91, 0.87, None], expect="equal")
    assert row["verdict"] != "identical by construction"
    assert (row["failed_a"], row["failed_b"]) == (0, 1)
    assert "b failed 1 of 3" in row["evidence"] and "among finished seeds" in row["qualifier"]


def test_a_constant_floating_point_shift_is_no_effect():
    """1e-16 on every seed is rounding, not an effect; a constant real shift has no seed
    variance but a known size, judged against the sesoi."""
    vals = np.array([0.91, 0.87, 0.93, 0.89])
    row, _ = two_levels(vals + 1e-16, vals)
    assert row["verdict"] == "identical by construction"
    row, _ = two_levels(vals + 0.001, vals)
    assert row["verdict"] == "supported" and row["relevance"] == "negligible"


def test_paired_contrast_matches_statsmodels():
    a, b = np.array([0.91, 0.87, 0.93, 0.90]), np.array([0.88, 0.86, 0.90, 0.86])
    row = two_levels(a, b)[0]
    ds = DescrStatsW(a - b)
    assert row["estimate"] == pytest.approx((a - b).mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(ds.tconfint_mean(0.05))
    assert row["p"] == pytest.approx(ds.ttest_mean(0)[1])
    assert row["tost_p"] == pytest.approx(ttost_paired(a, b, -0.01, 0.01)[0])
    assert row["paired"] and "one-sample t on per-seed differences (4 seeds)" in row["method"]


def test_welch_when_seeds_do_not_match():
    a, b = [0.9, 0.92, None, None], [None, None, 0.80, 0.83]
    row = two_levels(a, b, statuses={("g", "a", 2): "ok", ("g", "a", 3): "ok"})[0]
    assert not row["paired"] and "Welch" in row["method"]
    x, y = np.array([0.9, 0.92]), np.array([0.80, 0.83])
    cm = CompareMeans(DescrStatsW(x), DescrStatsW(y))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(cm.tconfint_diff(usevar="unequal"))
    assert row["p"] == pytest.approx(cm.ttest_ind(usevar="unequal")[1])
    assert row["tost_p"] == pytest.approx(ttost_ind(x, y, -0.01, 0.01, usevar="unequal")[0])


def test_tests_match_statsmodels_on_known_inputs():
    rng = np.random.default_rng(2)
    d = rng.normal(0.02, 0.03, 7)
    t = inference.per_seed_t(d)
    ds = DescrStatsW(d)
    assert t.p() == pytest.approx(ds.ttest_mean(0)[1])
    assert t.ci(0.1) == pytest.approx(ds.tconfint_mean(0.1))
    assert t.tost(0.01) == pytest.approx(ds.ttost_mean(-0.01, 0.01)[0])
    # the minimum-effect test: below alpha exactly when the interval lies outside +/- margin
    for margin in (0.0, 0.005, 0.01, 0.03):
        lo, hi = t.ci(0.05)
        assert (t.exceeds(margin) < 0.05) == (lo > margin or hi < -margin)
    # three unequal samples: a Welch contrast of their means (Satterthwaite) against a
    # two-sample Welch test where it reduces to one (weights +1, -1, 0)
    x, y, z = rng.normal(0, 0.01, 5), rng.normal(0, 0.1, 4), rng.normal(0, 0.5, 6)
    w = inference.welch_t([x, y, z], np.array([1.0, -1.0, 0.0]))
    cm = CompareMeans(DescrStatsW(x), DescrStatsW(y))
    assert w.p() == pytest.approx(cm.ttest_ind(usevar="unequal")[1])


def test_hotelling_and_bonferroni_for_several_levels():
    """Do k levels differ: Hotelling's T^2 (statsmodels' test_mvmean) where the seeds allow
    it, else Bonferroni over the pairs; the choice depends on the design only."""
    from statsmodels.stats.multivariate import test_mvmean

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(0.9 + rng.normal(0, 0.01, (20, 3)), columns=["a", "b", "c"])
    basis = [design.pair("b", "a"), design.pair("c", "a")]
    family = [design.pair(x, y) for x, y in design.all_pairs(["a", "b", "c"])]
    res = inference.joint(frame, basis, family, 0.05, "differences")
    assert "Hotelling" in res.method
    d = np.column_stack([frame["b"] - frame["a"], frame["c"] - frame["a"]])
    assert res.p == pytest.approx(test_mvmean(d, np.zeros(2)).pvalue)
    res3 = inference.joint(frame.iloc[:3], basis, family, 0.05, "differences")
    assert res3.method.startswith("Bonferroni over 3")
    ps = [
        DescrStatsW(frame.iloc[:3][x] - frame.iloc[:3][y]).ttest_mean(0)[1]
        for x, y in design.all_pairs(["a", "b", "c"])
    ]
    assert res3.p == pytest.approx(min(1, 3 * min(ps)))
    assert not inference.use_hotelling(16, 2) and inference.use_hotelling(17, 2)


def grid_sim(rng, means: dict, sd=0.02, seeds=3, expect=None, seed_sd=0.0):
    seed_fx = rng.normal(0, seed_sd, seeds)
    levels = {label: {"bs": bs} for label, (bs, _) in means.items()}
    values = {
        ("g", label): list(m + seed_fx + rng.normal(0, sd, seeds))
        for label, (_, m) in means.items()
    }
    g = {"kind": "grid", "factors": ["bs"], "levels": levels}
    if expect:
        g["expect"] = expect
    return make_study({"g": g}, values)


def test_trend_is_the_per_seed_slope_and_names_its_direction():
    rng = np.random.default_rng(3)
    # smaller batches better: R2 falls as bs grows
    means = {"bs16": (16, 0.97), "bs32": (32, 0.90), "bs64": (64, 0.83)}
    summary, doc = grid_sim(rng, means, seeds=6, expect={"trend": "decreasing", "scale": "log2"})
    row = analysis.analyse_study(summary, doc)["verdicts"].iloc[0]
    assert row["verdict"] == "supported" and row["estimate"] < 0
    # the mean per-seed slope is the blocked OLS slope on a complete grid; its interval is
    # the one-sample t interval of the per-seed slopes
    frame = summary.assign(x=np.log2(summary["bs"]))
    fit = smf.ols("test_r2 ~ x + C(seed)", data=frame).fit()
    assert row["estimate"] == pytest.approx(fit.params["x"])
    slopes = [np.polyfit(f["x"], f["test_r2"], 1)[0] for _, f in frame.groupby("seed")]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(DescrStatsW(slopes).tconfint_mean())
    assert row["margin"] == pytest.approx(0.01 / 2)  # sesoi over two doublings
    # the example: asked "do smaller batches help?" when they hurt
    means = {"bs16": (16, 0.80), "bs32": (32, 0.87), "bs64": (64, 0.95)}
    summary, doc = grid_sim(rng, means, seeds=6, expect={"trend": "decreasing", "scale": "log2"})
    assert analysis.analyse_study(summary, doc)["verdicts"].iloc[0]["verdict"] == "contradicted"


def test_a_peaked_response_differs_not_monotone_best_in_the_middle():
    rng = np.random.default_rng(8)
    means = {"bs16": (16, 0.80), "bs32": (32, 0.95), "bs64": (64, 0.80)}
    summary, doc = grid_sim(rng, means, seeds=8, expect={"trend": "decreasing", "scale": "log2"})
    row = analysis.analyse_study(summary, doc)["verdicts"].iloc[0]
    assert row["verdict"] == "differs"
    assert row["qualifier"] == "not monotone; best at bs32"
    assert "lack of fit" in row["evidence"]


def test_factorial_main_effects_and_interaction_recovered():
    rng = np.random.default_rng(5)
    factors = {"a": [0, 1], "b": [0, 1], "c": [0, 1]}
    levels, values = {}, {}
    seed_fx = rng.normal(0, 0.01, 4)
    for va, vb, vc in itertools.product(*factors.values()):
        label = f"a{va}_b{vb}_c{vc}"
        levels[label] = {"a": va, "b": vb, "c": vc}
        mean = 0.8 + 0.05 * va + 0.0 * vb - 0.03 * vc + 0.04 * va * vc
        values[("g", label)] = list(mean + seed_fx + rng.normal(0, 0.002, 4))
    g = {"kind": "grid", "factors": ["a", "b", "c"], "levels": levels}
    summary, doc = make_study({"g": g}, values, sesoi=0.01)
    verdicts = analysis.analyse_study(summary, doc)["verdicts"].set_index("contrast")
    assert verdicts.loc["main:a", "verdict"] == "differs"
    assert verdicts.loc["main:a", "qualifier"] == "depends on c"
    assert verdicts.loc["main:c", "verdict"] in ("differs", "depends")
    assert verdicts.loc["interaction:a:c", "verdict"] == "differs"
    assert verdicts.loc["main:b", "verdict"] in ("no relevant effect", "inconclusive")
    assert verdicts.loc["interaction:a:b", "verdict"] != "differs"
    # estimates: main a = marginal mean difference, a:c = difference of differences; the
    # test is the one-sample t of the per-seed contrasts
    cell = summary.groupby(["seed", "a", "c"])["test_r2"].mean().unstack(["a", "c"])
    dod = (cell[(1, 1)] - cell[(0, 1)]) - (cell[(1, 0)] - cell[(0, 0)])
    assert verdicts.loc["interaction:a:c", "estimate"] == pytest.approx(dod.mean())
    assert verdicts.loc["interaction:a:c", "p"] == pytest.approx(DescrStatsW(dod).ttest_mean()[1])
    marg = summary.groupby("a")["test_r2"].mean()
    assert verdicts.loc["main:a", "estimate"] == pytest.approx(marg[1] - marg[0])


def test_an_interaction_asked_as_a_list_contrast_is_the_factorial_term():
    """The diagonals of a 2x2 (a list contrast) are recognised as its interaction: the same
    estimate (the whole difference of differences) and margin as the grid's term."""
    rng = np.random.default_rng(9)
    levels = {f"lr{a}_bs{b}": {"lr": a, "bs": b} for a in (1, 3) for b in (16, 64)}
    block = rng.normal(0, 0.05, 6)
    vals = {lb: 0.9 + 0.03 * (lb == "lr3_bs64") + block + rng.normal(0, 0.005, 6) for lb in levels}
    grid = {"kind": "grid", "factors": ["lr", "bs"], "levels": levels}
    listed = {
        "kind": "list",
        "factors": ["lr", "bs"],
        "levels": levels,
        "contrasts": [{"name": "x", "a": ["lr3_bs64", "lr1_bs16"], "b": ["lr1_bs64", "lr3_bs16"]}],
    }
    values = {(g, lb): list(v) for g in ("grid", "list") for lb, v in vals.items()}
    summary, doc = make_study({"grid": grid, "list": listed}, values)
    v = analysis.analyse_study(summary, doc)["verdicts"].set_index(["group", "contrast"])
    term, contrast = v.loc[("grid", "interaction:lr:bs")], v.loc[("list", "x")]
    for column in ("estimate", "ci_low", "ci_high", "p", "tost_p", "margin"):
        assert contrast[column] == pytest.approx(term[column]), column
    assert "recognised as the bs × lr interaction" in contrast["evidence"]
    assert design.interaction_of(["a", "b"], ["c", "d"], {k: {"x": k} for k in "abcd"}) is None


def test_unequal_variances_with_a_clear_effect():
    """One collapsed seed in an unrelated level must not hide a clear effect (issue 10)."""
    values = {
        ("g", "A"): [0.90, 0.905, 0.895, 0.9],
        ("g", "B"): [0.95, 0.952, 0.948, 0.951],
        ("g", "C"): [0.90, 0.20, 0.91, 0.9],  # one collapsed seed
    }
    g = {
        "kind": "list",
        "factors": ["x"],
        "levels": {"A": {"x": 1}, "B": {"x": 2}, "C": {"x": 3}},
        "contrasts": [{"name": "BA", "a": "B", "b": "A", "expect": "a_better"}],
    }
    summary, doc = make_study({"g": g}, values)
    verdicts = analysis.analyse_study(summary, doc)["verdicts"].set_index("contrast")
    assert verdicts.loc["BA", "verdict"] == "supported"
    g2 = {"kind": "grid", "factors": ["x"], "levels": g["levels"]}
    summary, doc = make_study({"g": g2}, values)
    row = analysis.analyse_study(summary, doc)["verdicts"].iloc[0]
    assert row["verdict"] == "differs" and "Bonferroni over 3" in row["method"]
    assert "simultaneous over 3 (Bonferroni)" in row["evidence"]


def test_shuffled_levels_error_rate_of_contrasts_and_trends(record_property):
    """No true effect: 'differs' (two-sided) at about alpha, 'supported' (one direction
    predicted) at about alpha/2, for contrasts and per-seed slopes (3 seeds, a shared seed
    effect SD 0.02 and run noise SD 0.01)."""
    rng = np.random.default_rng(11)
    n = 1000
    seed_fx = rng.normal(0, 0.02, (n, 1))
    a = 0.9 + seed_fx + rng.normal(0, 0.01, (n, 3))
    b = 0.9 + seed_fx + rng.normal(0, 0.01, (n, 3))
    differs = supported = 0
    for x, y in zip(a, b, strict=True):
        t = inference.per_seed_t(x - y)
        differs += analysis.decide("", t.estimate, t.p(), math.nan, None) == "differs"
        supported += analysis.decide("a_better", t.estimate, t.p(), math.nan, None) == "supported"
    n_trend, trend_hits = 1000, 0
    slope = design.slope({"a": 4.0, "b": 5.0, "c": 6.0})
    for _ in range(n_trend):
        fx = rng.normal(0, 0.02, (3, 1))
        values = pd.DataFrame(0.9 + fx + rng.normal(0, 0.01, (3, 3)), columns=["a", "b", "c"])
        t = inference.linear(values, slope, "slopes")
        trend_hits += (
            analysis.decide("decreasing", t.estimate, t.p(), math.nan, None) == "supported"
        )
    rates = {
        "contrast_differs": differs / n,
        "contrast_supported_one_direction": supported / n,
        "trend_supported_one_direction": trend_hits / n_trend,
    }
    print(f"null simulations ({n} contrasts, {n_trend} trends):", rates)
    record_property("false_positive_rates", rates)
    assert abs(rates["contrast_differs"] - 0.05) <= band(0.05, n)
    assert abs(rates["contrast_supported_one_direction"] - 0.025) <= band(0.025, n)
    assert abs(rates["trend_supported_one_direction"] - 0.025) <= band(0.025, n_trend)


def band(rate: float, n: int) -> float:
    """3 Monte-Carlo standard errors of a rate estimated from n simulations."""
    return 3 * math.sqrt(rate * (1 - rate) / n)


def test_holm_and_weighted_holm_match_their_definitions():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, math.nan, 0.03, 0.2, 0.001]
    ref = multipletests([x for x in p if x == x], method="holm")[1]
    out = analysis.holm(p)
    assert math.isnan(out[2])
    assert [x for x in out if x == x] == pytest.approx(list(ref))
    # equal weights: weighted Holm is Holm
    adj, share = inference.weighted_holm([0.01, 0.04], [0.5, 0.5], 0.05)
    assert adj == pytest.approx(multipletests([0.01, 0.04], method="holm")[1])
    # 80/20: the first is tested at 0.04 first; rejected, it passes its share to the second
    adj, share = inference.weighted_holm([0.035, 0.045], [0.8, 0.2], 0.05)
    assert adj == pytest.approx([0.035 / 0.8, 0.045]) and share == [0.8, 1.0]
    adj, share = inference.weighted_holm([0.045, 0.3], [0.8, 0.2], 0.05)
    assert adj[0] > 0.05 and share == pytest.approx([0.8, 0.2])


def test_mostly_diverged_config_is_never_recommended_and_the_verdict_says_so():
    values = {
        ("g", "a"): [0.99, None, None, 0.985, 0.99],
        ("g", "b"): [0.90, 0.91, 0.92, 0.9, 0.91],
        ("g", "c"): [0.85, 0.86, 0.84, 0.85, 0.86],
    }
    g = {
        "kind": "grid",
        "factors": ["x"],
        "levels": {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}},
        "baseline": "b",
        "contrasts": [{"name": "ab", "a": "a", "b": "b", "expect": "a_better"}],
    }
    summary, doc = make_study({"g": g}, values)
    out = analysis.analyse_study(summary, doc)
    rec = out["recommended"]
    assert rec["recommended"]["experiment"] == "g-b"
    assert rec["excluded"][0]["experiment"] == "g-a"
    assert "2 of 5 seeds did not finish" in rec["excluded"][0]["reason"]
    assert rec["excluded"][0]["better_among_finished_seeds_in"] == ["g / ab (supported)"]
    row = out["verdicts"].set_index("contrast").loc["ab"]
    assert row["verdict"] == "supported"
    assert "among finished seeds" in row["qualifier"] and "not recommended" in row["qualifier"]
    assert (row["failed_a"], row["failed_b"]) == (2, 0)
    assert row["fisher_p"] == pytest.approx(0.4444, abs=1e-3)
    level_a = next(lv for lv in out["levels"] if lv["label"] == "a")
    assert level_a["n_failed"] == 2
    assert out["groups"]["g"]["rank_check"]["n_failed"] == 2
    assert any("did not finish" in w for w in out["groups"]["g"]["warnings"])


def test_adequacy_warnings_steps_convergence_and_clipped_ci():
    values = {("g", "bs16"): [0.95, 0.99, 0.999], ("g", "bs128"): [0.5, 0.6, 0.55]}
    extra = {
        ("g", "bs16"): {"optimizer_steps": 66, "best_epoch": 3, "epochs_run": 3},
        ("g", "bs128"): {"optimizer_steps": 9, "best_epoch": 2, "epochs_run": 3},
    }
    g = {"kind": "grid", "factors": ["bs"], "levels": {"bs16": {"bs": 16}, "bs128": {"bs": 128}}}
    summary, doc = make_study({"g": g}, values, extra=extra)
    out = analysis.analyse_study(summary, doc)
    warnings = " ".join(out["groups"]["g"]["warnings"])
    assert "3 of 6 finished runs had their best epoch at the last epoch" in warnings
    assert "7.3x" in warnings and "9 to 66" in warnings
    bs16 = out["levels"][0]
    assert bs16["ci_clipped"] and bs16["ci_high"] == 1.0


def test_entry_point_outputs_are_complete():
    summary, doc = grid_sim(np.random.default_rng(0), {"x": (1, 0.9), "y": (2, 0.8)})
    out = analysis.analyse_study(summary, doc)
    assert list(out["verdicts"].columns) == analysis.VERDICT_COLUMNS
    assert set(out["verdicts"]["verdict"]) <= set(analysis.VERDICTS)
    assert "sesoi" in out["rule"] and out["worked_example"]
