"""Analysis v2 (issue 10): properties on simulated seed-level data with known truth, and the
statistics against statsmodels on known inputs. The tests never restate the verdict rule:
they build data whose answer is known (a reversed effect, a null effect, shuffled levels, a
known factorial structure, identical runs) and check the verdict names it, and they
measure the error rate of shuffled levels over many simulations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from statsmodels.stats.weightstats import DescrStatsW, ttost_paired

from hpstudy import analysis


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
    # without a prediction: differs, either way
    assert two_levels(bad, good, expect="")[0]["verdict"] == "differs"


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
    assert row["seeds_needed"] > 3
    from statsmodels.stats.power import TTestPower

    ref = TTestPower().solve_power(0.01 / d.std(ddof=1), alpha=0.05, power=0.8)
    assert row["seeds_needed"] == math.ceil(ref)


def test_identical_runs_are_identical_by_construction():
    vals = [0.91, 0.87, 0.93]
    row, out = two_levels(vals, vals, expect="equal")
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


def test_paired_contrast_matches_statsmodels():
    a, b = np.array([0.91, 0.87, 0.93, 0.90]), np.array([0.88, 0.86, 0.90, 0.86])
    row = two_levels(a, b)[0]
    ds = DescrStatsW(a - b)
    assert row["estimate"] == pytest.approx((a - b).mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(ds.tconfint_mean(0.05))
    assert row["p"] == pytest.approx(ds.ttest_mean(0)[1])
    assert row["tost_p"] == pytest.approx(ttost_paired(a, b, -0.01, 0.01)[0])
    assert row["paired"]


def test_welch_when_seeds_do_not_match():
    from statsmodels.stats.weightstats import CompareMeans

    a, b = [0.9, 0.92, None, None], [None, None, 0.80, 0.83]
    row = two_levels(a, b, statuses={("g", "a", 2): "ok", ("g", "a", 3): "ok"})[0]
    assert not row["paired"]
    cm = CompareMeans(DescrStatsW(np.array([0.9, 0.92])), DescrStatsW(np.array([0.80, 0.83])))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(cm.tconfint_diff(usevar="unequal"))


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


def test_trend_direction_matches_the_question_and_statsmodels():
    rng = np.random.default_rng(3)
    # smaller batches better: R2 falls as bs grows
    means = {"bs16": (16, 0.97), "bs32": (32, 0.955), "bs64": (64, 0.80)}
    summary, doc = grid_sim(rng, means, expect={"trend": "decreasing", "scale": "log2"})
    row = analysis.analyse_study(summary, doc)["verdicts"].iloc[0]
    assert row["verdict"] == "supported" and row["estimate"] < 0
    frame = summary.assign(x=np.log2(summary["bs"]))
    fit = smf.ols("test_r2 ~ x + C(seed)", data=frame).fit()
    assert row["estimate"] == pytest.approx(fit.params["x"])
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(fit.conf_int().loc["x"]))
    # the example: asked "do smaller batches help?" when they hurt
    means = {"bs16": (16, 0.80), "bs32": (32, 0.955), "bs64": (64, 0.972)}
    summary, doc = grid_sim(rng, means, expect={"trend": "decreasing", "scale": "log2"})
    assert analysis.analyse_study(summary, doc)["verdicts"].iloc[0]["verdict"] == "contradicted"


def test_unequal_variances_with_a_clear_effect():
    """One collapsed seed in an unrelated level must not hide a clear effect (issue 10)."""
    values = {
        ("g", "A"): [0.90, 0.905, 0.895],
        ("g", "B"): [0.95, 0.952, 0.948],
        ("g", "C"): [0.90, 0.20, 0.91],  # one collapsed seed
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
    # and a one-factor grid without prediction: Welch's ANOVA carries the omnibus
    g2 = {"kind": "grid", "factors": ["x"], "levels": g["levels"]}
    summary, doc = make_study({"g": g2}, values)
    out = analysis.analyse_study(summary, doc)
    assert out["verdicts"].iloc[0]["verdict"] == "differs"
    assert out["groups"]["g"]["omnibus"]["p_welch"] < 0.01


def test_factorial_main_effects_and_interaction_recovered():
    rng = np.random.default_rng(5)
    factors = {"a": [0, 1], "b": [0, 1], "c": [0, 1]}
    levels, values = {}, {}
    seed_fx = rng.normal(0, 0.01, 3)
    for va, vb, vc in itertools.product(*factors.values()):
        label = f"a{va}_b{vb}_c{vc}"
        levels[label] = {"a": va, "b": vb, "c": vc}
        mean = 0.8 + 0.05 * va + 0.0 * vb - 0.03 * vc + 0.04 * va * vc
        values[("g", label)] = list(mean + seed_fx + rng.normal(0, 0.004, 3))
    g = {"kind": "grid", "factors": ["a", "b", "c"], "levels": levels}
    summary, doc = make_study({"g": g}, values, sesoi=0.01)
    verdicts = analysis.analyse_study(summary, doc)["verdicts"].set_index("contrast")
    assert verdicts.loc["main:a", "verdict"] == "differs"
    assert verdicts.loc["main:c", "verdict"] == "differs"
    assert verdicts.loc["interaction:a:c", "verdict"] == "differs"
    assert verdicts.loc["main:b", "verdict"] in ("no relevant effect", "inconclusive")
    assert verdicts.loc["interaction:a:b", "verdict"] != "differs"
    # estimates: main a = marginal mean difference, a:c = difference of differences
    frame = summary.groupby(["a", "c"])["test_r2"].mean()
    dod = (frame[(1, 1)] - frame[(0, 1)]) - (frame[(1, 0)] - frame[(0, 0)])
    assert verdicts.loc["interaction:a:c", "estimate"] == pytest.approx(dod)
    marg = summary.groupby("a")["test_r2"].mean()
    assert verdicts.loc["main:a", "estimate"] == pytest.approx(marg[1] - marg[0])
    # the p-values are statsmodels' type II ANOVA
    fit = smf.ols("test_r2 ~ (C(a, Sum) + C(b, Sum) + C(c, Sum))**2 + C(seed)", summary).fit()
    table = sm.stats.anova_lm(fit, typ=2)
    assert verdicts.loc["main:a", "p"] == pytest.approx(table.loc["C(a, Sum)", "PR(>F)"])


def band(rate: float, n: int) -> float:
    """3 Monte-Carlo standard errors of a rate estimated from n simulations."""
    return 3 * math.sqrt(rate * (1 - rate) / n)


def test_shuffled_levels_error_rate_of_contrasts_and_trends(record_property):
    """No true effect (levels are exchangeable): 'differs' (two-sided) must come out at
    about alpha, 'supported' (one direction predicted) at about alpha/2. Seed-level data:
    3 seeds, a shared seed effect (SD 0.02) and run noise (SD 0.01)."""
    rng = np.random.default_rng(11)
    n = 1000
    seed_fx = rng.normal(0, 0.02, (n, 1))
    a = 0.9 + seed_fx + rng.normal(0, 0.01, (n, 3))
    b = 0.9 + seed_fx + rng.normal(0, 0.01, (n, 3))
    differs = supported = 0
    for x, y in zip(a, b, strict=True):
        comp = analysis.compare(pd.Series(x), pd.Series(y), 0.01)
        differs += analysis.decide("", comp["estimate"], comp["p"], math.nan, None, 1) == "differs"
        supported += (
            analysis.decide("a_better", comp["estimate"], comp["p"], math.nan, None, 1)
            == "supported"
        )
    n_trend, trend_hits = 300, 0
    for _ in range(n_trend):
        fx = rng.normal(0, 0.02, (3, 1))
        values = pd.DataFrame(0.9 + fx + rng.normal(0, 0.01, (3, 3)), columns=["a", "b", "c"])
        tr = analysis.trend(values, {"a": 16, "b": 32, "c": 64}, "log2", 0.01)
        trend_hits += (
            analysis.decide("decreasing", tr["estimate"], tr["p"], math.nan, None, 1) == "supported"
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


@pytest.mark.slow
def test_shuffled_levels_error_rate_of_whole_groups(record_property):
    """The whole pipeline on null studies (3 levels x 3 seeds, two planned contrasts under
    Holm): the omnibus 'differs' rate and the family-wise contrast rate stay at or below
    about alpha."""
    rng = np.random.default_rng(12)
    n_sims, hits_group, hits_contrast = 200, 0, 0
    for _ in range(n_sims):
        seed_fx = rng.normal(0, 0.02, 3)
        vals = {("g", k): list(0.9 + seed_fx + rng.normal(0, 0.01, 3)) for k in ("a", "b", "c")}
        g = {
            "kind": "grid",
            "factors": ["bs"],
            "levels": {"a": {"bs": 16}, "b": {"bs": 32}, "c": {"bs": 64}},
            "contrasts": [
                {"name": "ab", "a": "a", "b": "b", "expect": "a_better"},
                {"name": "cb", "a": "c", "b": "b"},
            ],
        }
        summary, doc = make_study({"g": g}, vals)
        v = analysis.analyse_study(summary, doc)["verdicts"].set_index("contrast")
        hits_group += v.loc["(group)", "verdict"] == "differs"
        hits_contrast += (v.loc[["ab", "cb"], "verdict"].isin(["supported", "differs"])).any()
    rates = {"omnibus": hits_group / n_sims, "contrasts_familywise": hits_contrast / n_sims}
    print(f"null simulations ({n_sims} studies):", rates)
    record_property("false_positive_rates", rates)
    assert rates["omnibus"] <= 0.05 + band(0.05, n_sims)
    assert rates["contrasts_familywise"] <= 0.05 + band(0.05, n_sims)


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, math.nan, 0.03, 0.2, 0.001]
    ref = multipletests([x for x in p if x == x], method="holm")[1]
    out = analysis.holm(p)
    assert math.isnan(out[2])
    assert [x for x in out if x == x] == pytest.approx(list(ref))


def test_mostly_diverged_config_is_never_recommended():
    values = {
        ("g", "a"): [0.99, None, None],
        ("g", "b"): [0.90, 0.91, 0.92],
        ("g", "c"): [0.85, 0.86, 0.84],
    }
    g = {
        "kind": "grid",
        "factors": ["x"],
        "levels": {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}},
        "baseline": "b",
    }
    summary, doc = make_study({"g": g}, values)
    out = analysis.analyse_study(summary, doc)
    rec = out["recommended"]
    assert rec["recommended"]["experiment"] == "g-b"
    assert rec["excluded"][0]["experiment"] == "g-a"
    assert "2 of 3 seeds did not finish" in rec["excluded"][0]["reason"]
    assert rec["runner_up"]["experiment"] == "g-c"
    level_a = next(lv for lv in out["levels"] if lv["label"] == "a")
    assert level_a["n_failed"] == 2 and level_a["fisher_p"] == pytest.approx(0.4)
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
