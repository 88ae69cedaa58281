"""The verdict rule: from a question's tests (hpstudy.analysis.questions) to its verdict,
the relevance of the effect it found, and the words after the verdict (`qualifier`).

RULE is the rule as printed in every report and in docs/report.md.
"""

from __future__ import annotations

import math

import numpy as np

from hpstudy.analysis.inference import weighted_holm

ALPHA = 0.05
POWER = 0.8
VERDICTS = (
    "supported",
    "contradicted",
    "differs",
    "depends",
    "no relevant effect",
    "inconclusive",
    "identical by construction",
    "not testable",
)
RELEVANCE = ("relevant", "negligible", "unclear")
# a trend's family: the slope (the question asked) carries this share of alpha, its lack of
# fit the rest; weighted Holm passes a rejected test's share on to the other
SLOPE_SHARE = 0.8
NO_EFFECT = ("equal", "none")

RULE = (
    f"α = {ALPHA}. Every question is tested on its per-seed effect (the per-seed difference, "
    "slope, main-effect or interaction contrast; a one-sample t, exact however unequal the "
    "levels' noise), or with Welch's t where seeds are not shared; the evidence names the "
    "test. **not testable**: fewer than two finished seeds per side. **identical by "
    "construction**: every seed gives exactly the same number on both sides, and both sides "
    "finished the same seeds. Otherwise, with Holm-adjusted p-values (families: a group's "
    "contrasts; its main effects; its interactions; a trend's slope and its lack of fit, "
    "weighted 80/20): a directional prediction (`a_better`, `b_better`, a `trend`) is "
    "**supported** when the effect is significant and goes the predicted way, "
    "**contradicted** when it goes the other way; without a prediction a significant effect "
    "**differs**. A question that predicts no effect (`equal`, `none`) is **contradicted** "
    "only when its interval lies outside ± sesoi (the effect is shown to exceed it). **No "
    "relevant effect**: the 90% interval lies inside ± sesoi (TOST p < α; every pair of "
    "levels for a group of several), checked first for questions that predict no effect or "
    "nothing. A trend whose lack of fit is significant **differs, not monotone** when a level "
    "is significantly better (or worse) than a level on each side of it (Bonferroni over all "
    "pairs), else keeps its slope's verdict, 'curved'. A main effect whose interaction is "
    "significant **depends** on the other factor (the simple effects are in the evidence), and "
    "is **no relevant effect** only when its interactions are shown inside ± sesoi too. "
    "Everything else is **inconclusive**, with the seeds per level that give 80% power against "
    "a sesoi-sized effect at the level the answer uses (Holm's share of α, a sequential "
    "study's last look). `relevance`: a found effect is relevant (interval outside ± sesoi), "
    "negligible (TOST inside) or unclear. A contrast whose sides failed on some seeds holds "
    "among finished seeds, with the failure counts and Fisher's exact test; a configuration "
    "that failed is never recommended. Without a `sesoi` no equivalence or relevance claim is "
    "made, and 'contradicted' for a no-effect prediction needs only a significant effect."
)


def decide(
    expect: str,
    estimate: float,
    p_adj: float,
    tost_p: float,
    margin: float | None,
    sign: int = 1,
    testable: bool = True,
    identical: bool = False,
    alpha: float = ALPHA,
) -> str:
    """The verdict of one question. `expect`: "a_better", "b_better", "increasing",
    "decreasing", "equal", "none" or "" (two-sided). `p_adj`: the Holm-adjusted p of the claim
    the question can make - the test of 0, or for "equal"/"none" the test of |effect| >
    margin. `sign` is +1 when higher is better (for a_better/b_better). `alpha`: the level of
    this look (a sequential study's nominal level)."""
    if not testable:
        return "not testable"
    if identical:
        return "identical by construction"
    significant = math.isfinite(p_adj) and p_adj < alpha
    equivalent = bool(margin) and math.isfinite(tost_p) and tost_p < alpha
    if expect in ("", *NO_EFFECT):
        if equivalent:
            return "no relevant effect"
        if significant:
            return "differs" if expect == "" else "contradicted"
        return "inconclusive"
    predicted = {"a_better": sign, "b_better": -sign, "increasing": 1, "decreasing": -1}[expect]
    if significant and math.isfinite(estimate) and estimate != 0:
        return "supported" if np.sign(estimate) == predicted else "contradicted"
    if equivalent:
        return "no relevant effect"
    return "inconclusive"


def relevance(ci: tuple[float, float], tost_p: float, margin: float, alpha: float) -> str:
    """relevant: the interval lies outside +/- margin; negligible: TOST shows the effect
    inside it; unclear: neither (or no margin to judge by)."""
    lo, hi = ci
    if not margin or not (math.isfinite(lo) and math.isfinite(hi)):
        return "unclear"
    if lo > margin or hi < -margin:
        return "relevant"
    if math.isfinite(tost_p) and tost_p < alpha:
        return "negligible"
    return "unclear"


def trend_verdict(q, alpha: float) -> tuple[str, str]:
    """A trend row: weighted Holm over its slope (SLOPE_SHARE of alpha) and its lack of fit
    (the rest); sets q.p_adj and q.share to those of the test the verdict rests on.
    Returns (verdict, qualifier)."""
    if not q.testable or q.identical:
        return decide(q.expect, 0.0, math.nan, q.tost_p, q.margin, 1, q.testable, q.identical), ""
    ps = [q.p, q.extra["p_lof"]]
    (p_slope, p_lof), (s_slope, s_lof) = weighted_holm(ps, [SLOPE_SHARE, 1 - SLOPE_SHARE], alpha)
    q.extra["p_lof_adj"] = p_lof
    q.p_adj, q.share = p_slope, s_slope
    shape = q.extra["shape"]
    curved = math.isfinite(p_lof) and p_lof < alpha
    turn = shape.get("turn")
    if curved and turn:
        q.p_adj, q.share = p_lof, s_lof
        kind, level = turn
        where = (
            f"best at {level}" if kind == "peak" else f"worst at {level}, best at {shape['best']}"
        )
        return "differs", f"not monotone; {where}"
    if math.isfinite(p_slope) and p_slope < alpha:
        verdict = decide(q.expect, q.test.estimate, p_slope, math.nan, None, 1, True, False, alpha)
        return verdict, (f"curved (not linear in {q.extra['scale']})" if curved else "")
    if curved:
        q.p_adj, q.share = p_lof, s_lof
        return "differs", f"curved, no clear direction; highest mean at {shape['best']}"
    return decide(q.expect, q.test.estimate, p_slope, q.tost_p, q.margin, 1, True, False, alpha), ""


def depends(mains: list, interactions: list, zero_adj: dict, alpha: float) -> None:
    """A main effect whose interaction is significant depends on the other factor: never
    'no relevant effect' (nor a plain 'inconclusive'); a main effect shown negligible whose
    interactions are not shown negligible too stays inconclusive. Sets verdict/qualifier."""
    for q in mains:
        f = q.extra["factors"][0]
        mine = [i for i in interactions if f in i.extra["factors"]]
        sig = [i for i in mine if zero_adj.get(i.contrast, math.nan) < alpha]
        others = ", ".join(g for i in sig for g in i.extra["factors"] if g != f)
        if sig:
            if q.verdict in ("no relevant effect", "inconclusive"):
                q.verdict = "depends"
                q.p_adj = min(zero_adj[i.contrast] for i in sig)
                q.qualifier = f"on {others}"
            else:
                q.qualifier = f"depends on {others}"
        elif q.verdict == "no relevant effect":
            open_ = [i for i in mine if not (math.isfinite(i.tost_p) and i.tost_p < alpha)]
            if open_:
                q.verdict = "inconclusive"
                names = ", ".join(g for i in open_ for g in i.extra["factors"] if g != f)
                q.qualifier = (
                    f"inside ±sesoi on average, but its interaction with {names} is not excluded"
                )
