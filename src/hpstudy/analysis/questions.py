"""Each question of a group as tests on its design (hpstudy.analysis.design): the planned
contrasts, the group row of a trend, of "do these levels differ?" and the terms of a
factorial grid. A Question holds the numbers the verdict rule (hpstudy.analysis.rule) needs:
the headline estimate as a TTest, the p-value of the claim the row can make, the TOST p of
its equivalence claim, its margin (the sesoi in the row's own units) and its Holm family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import hpstudy.analysis.design as dz
from hpstudy.analysis.inference import (
    TTest,
    fisher,
    holm,
    identical,
    joint,
    linear,
    untestable,
    welch_anova,
)
from hpstudy.formatting import p_is

NO_EFFECT = ("equal", "none")


@dataclass
class Question:
    contrast: str  # the row's name in verdicts.csv
    question: str
    expect: str  # a_better, b_better, increasing, decreasing, equal, none or ""
    family: str  # Holm family within the group
    what: str  # the estimate in words
    test: TTest  # the headline one-degree-of-freedom estimate
    p: float  # unadjusted p of the question (a joint test for several df)
    margin: float  # the sesoi in the estimate's units (0 without a sesoi)
    ci_alpha: float  # the level of the reported interval (alpha / family for a selected pair)
    method: str
    tost_p: float = math.nan  # p of the equivalence claim
    p_exceeds: float = math.nan  # p of |effect| > margin (what "contradicted" needs for none)
    identical: bool = False
    testable: bool = True
    n_a: int = 0
    n_b: int = 0
    failures: dict[str, Any] = field(default_factory=dict)  # a contrast's failure counts
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    p_adj: float = math.nan
    share: float = 1.0  # the share of alpha the row's test gets (Holm)
    power_family: int = 1  # Bonferroni family of the headline estimate (for seeds_needed)
    verdict: str = ""
    qualifier: str = ""

    @property
    def p_claim(self) -> float:
        """The p-value of the claim the row can make: an effect (the test of 0), or for a
        question that predicts no effect, an effect beyond its margin."""
        return self.p_exceeds if self.expect in NO_EFFECT else self.p

    @property
    def ci(self) -> tuple[float, float]:
        return self.test.ci(self.ci_alpha)


def _swap(t: TTest) -> TTest:
    return TTest(-t.estimate, t.se, t.df, t.n, t.sd, t.paired, t.method)


def _pick(tests: list[TTest], key) -> tuple[int, TTest]:
    """The index and test of the family with the largest key(estimate)."""
    i = max(range(len(tests)), key=lambda j: key(tests[j].estimate))
    return i, tests[i]


# -- planned contrasts ------------------------------------------------------------------
def contrast(d: dz.Design, spec: dict[str, Any], sesoi: float | None, alpha: float) -> Question:
    a = [spec["a"]] if isinstance(spec["a"], str) else list(spec["a"])
    b = [spec["b"]] if isinstance(spec["b"], str) else list(spec["b"])
    name_a = a[0] if len(a) == 1 else "mean(" + ", ".join(a) + ")"
    name_b = b[0] if len(b) == 1 else "mean(" + ", ".join(b) + ")"
    inter = dz.interaction_of(a, b, d.settings)
    notes = []
    if inter:
        weights = {**{lb: 1.0 for lb in a}, **{lb: -1.0 for lb in b}}
        first, second = (", ".join(keys) for keys in inter)
        plus, minus = " + ".join(a), " + ".join(b)
        what = f"difference of differences ({first} × {second}) = ({plus}) − ({minus})"
        notes.append(
            f"recognised as the {first} × {second} interaction of a 2×2 design: the "
            "estimate is the whole difference of differences, 2 × (mean(a) − mean(b)), "
            "tested against ±sesoi like a factorial interaction term"
        )
    else:
        weights = dz.sides(a, b)
        what = f"{name_a} − {name_b}"
    t = linear(d.table, weights)
    same = len(a) == len(b) == 1 and identical(d.table, None, [a[0], b[0]])
    failures = side_failures(d, a, b)
    q = Question(
        contrast=spec["name"],
        question=f"{name_a} vs {name_b}",
        expect=spec.get("expect", "") or "",
        family="contrasts",
        what=what,
        test=t,
        p=t.p(),
        margin=sesoi or 0.0,
        ci_alpha=alpha,
        method=t.method,
        tost_p=t.tost(sesoi),
        p_exceeds=t.exceeds(sesoi),
        identical=same,
        testable=t.testable,
        n_a=t.n if t.paired else int(d.values[a].notna().all(axis=1).sum()),
        n_b=t.n if t.paired else int(d.values[b].notna().all(axis=1).sum()),
        failures=failures,
        notes=notes,
    )
    if not t.testable:
        q.notes.append("fewer than two finished seeds on a side")
    return q


def side_failures(d: dz.Design, a: list[str], b: list[str]) -> dict[str, Any]:
    """Seeds each side ran and failed (a side fails on a seed where any of its levels did),
    with Fisher's exact test of the two failure rates."""
    out, t = {}, d.table
    for side, labels in (("a", a), ("b", b)):
        ran = t.mask(t.ran, labels).any(axis=1)
        out[f"ran_{side}"] = int(ran.sum())
        out[f"failed_{side}"] = int((t.mask(t.failed, labels).any(axis=1) & ran).sum())
    out["fisher_p"] = fisher(out["failed_a"], out["ran_a"], out["failed_b"], out["ran_b"])
    return out


# -- the group row: do the levels differ? --------------------------------------------------
def levels(d: dz.Design, sesoi: float | None, alpha: float, expect: str) -> Question:
    """Every pair of levels as a family: Hotelling's T^2 on the per-seed differences from the
    first level, or Bonferroni over the pairs (inference.joint); Welch's ANOVA without shared
    seeds. The estimate is best minus worst level, its interval Bonferroni-adjusted over all
    pairs, so picking the pair after seeing the data keeps its 95% coverage."""
    usable = [lb for lb in d.labels if d.values[lb].notna().sum() >= 2]
    base = Question(
        "(group)", "", expect, "group", "", untestable(""), math.nan, sesoi or 0.0, alpha, ""
    )
    if len(usable) < 2:
        base.testable = False
        base.notes.append("fewer than two levels with at least two finished seeds")
        return base
    if identical(d.table, None, usable):
        n = len(d.table.complete(usable))
        t = TTest(0.0, 0.0, 1.0, n, 0.0, True, "")
        base.identical, base.test, base.p, base.tost_p, base.p_exceeds = True, t, 1.0, 0.0, 1.0
        base.n_a = base.n_b = n
        return base
    pairs = dz.all_pairs(usable)
    family = [dz.pair(x, y) for x, y in pairs]
    basis = [dz.pair(lb, usable[0]) for lb in usable[1:]]
    if len(d.table.complete(usable)) >= 2:
        res = joint(d.table, basis, family, alpha, "differences between levels")
        p, method, tests = res.p, res.method, res.family
    else:
        tests = [linear(d.table, w) for w in family]
        p, method = welch_anova(d.table, usable), "Welch's ANOVA (seeds not shared)"
    m = len(pairs)
    # best minus worst level (by their means), from the pair's own test
    means = d.values[usable].mean()
    ranked = sorted(usable, key=lambda lb: d.sign * means[lb], reverse=True)
    best, worst = ranked[0], ranked[-1]
    i = pairs.index((best, worst)) if (best, worst) in pairs else pairs.index((worst, best))
    t = tests[i] if pairs[i] == (best, worst) else _swap(tests[i])
    exceeds = [x.exceeds(sesoi) for x in tests]
    tosts = [x.tost(sesoi) for x in tests]
    return Question(
        contrast="(group)",
        question="",
        expect=expect,
        family="group",
        what=f"best − worst level ({best} − {worst})",
        test=t,
        p=p,
        margin=sesoi or 0.0,
        ci_alpha=alpha / m,
        method=method,
        tost_p=max(tosts) if sesoi and all(math.isfinite(x) for x in tosts) else math.nan,
        p_exceeds=min(1.0, m * min(exceeds))
        if all(math.isfinite(x) for x in exceeds)
        else math.nan,
        testable=math.isfinite(p),
        n_a=t.n,
        n_b=t.n,
        extra={
            "best": best,
            "worst": worst,
            "pairs": m,
            "strongest": _strongest(pairs, tests, d.sign, (best, worst)),
        },
        power_family=m,
    )


def _strongest(pairs, tests: list[TTest], sign: int, shown: tuple[str, str]) -> str:
    """'a − b = +0.02, unadjusted p = 0.01': the pair with the smallest p, better level
    first, where it is not the best-minus-worst pair the row shows."""
    ps = [t.p() if math.isfinite(t.p()) else 2.0 for t in tests]
    i = min(range(len(ps)), key=ps.__getitem__)
    if ps[i] > 1 or set(pairs[i]) == set(shown):
        return ""
    a, b = pairs[i]
    if sign * tests[i].estimate < 0:
        a, b = b, a
    return f"{a} − {b} = {abs(tests[i].estimate):+.3g}, unadjusted {p_is(ps[i])}"


# -- the group row of a trend ------------------------------------------------------------
def trend(d: dz.Design, sesoi: float | None, alpha: float) -> Question:
    """The per-seed least-squares slope on the factor (log2 where declared), one-sample t;
    lack of fit: the per-seed orthonormal polynomial contrasts of degree 2 and up (the
    levels' deviations from the line), Hotelling's T^2 or Bonferroni (inference.joint); the
    two tests are one Holm family. Equivalence needs every pair of levels within +/- sesoi
    (each pair's TOST: an intersection-union test, no adjustment). A non-monotone shape is
    claimed only from pairwise tests, Bonferroni over all pairs: a level significantly
    better (or worse) than a level on each side of it."""
    f = d.factors[0]
    log2 = d.expect.get("scale") == "log2"
    scale = f"log2({f})" if log2 else f
    x = {lb: d.x[lb] for lb in d.labels if d.values[lb].notna().any()}
    expect = d.expect["trend"]
    q = Question(
        contrast="(group)",
        question="",
        expect=expect,
        family="group",
        what=f"slope per {'doubling' if log2 else 'unit'} of {f}",
        test=untestable(""),
        p=math.nan,
        margin=0.0,
        ci_alpha=alpha,
        method="",
    )
    if len(set(x.values())) < 2:
        q.testable = False
        q.notes.append("fewer than two factor values with finished runs")
        return q
    labels = sorted(x, key=x.get)
    if identical(d.table, None, labels):
        n = len(d.table.complete(labels))
        q.identical, q.test, q.p = True, TTest(0.0, 0.0, 1.0, n, 0.0, True, ""), 1.0
        q.n_a = q.n_b = n
        q.tost_p = 0.0 if sesoi else math.nan
        return q
    span = max(x.values()) - min(x.values())
    t = linear(d.table, dz.slope(x), "slopes")
    curv = dz.curvature({lb: x[lb] for lb in labels})
    lof = joint(d.table, curv, curv, alpha, "deviations from the line") if curv else None
    p_lof = lof.p if lof else math.nan
    pairs = dz.all_pairs(labels)
    tests = [linear(d.table, dz.pair(a, b)) for a, b in pairs]
    tosts = [s.tost(sesoi) for s in tests]
    margin = (sesoi or 0.0) / span
    q.test, q.p, q.margin, q.testable = t, t.p(), margin, t.testable
    q.method = t.method + (f"; lack of fit: {lof.method}" if lof else "")
    q.tost_p = max(tosts) if sesoi and all(math.isfinite(v) for v in tosts) else math.nan
    q.p_exceeds = t.exceeds(margin)
    q.n_a = q.n_b = t.n
    q.extra = {
        "span": span,
        "scale": scale,
        "p_lof": p_lof,
        "lof_method": lof.method if lof else "",
        "shape": shape(d, labels, pairs, tests, alpha),
        "slope_tost": t.tost(margin) if sesoi else math.nan,
    }
    return q


def shape(d: dz.Design, labels, pairs, tests: list[TTest], alpha: float) -> dict[str, Any]:
    """Levels that are significantly better (or worse) than a level on each side of them,
    Bonferroni over all pairs; and the best level by mean."""
    m = len(pairs)
    better: dict[tuple[str, str], bool] = {}  # (i, j) -> i significantly better than j
    for (a, b), t in zip(pairs, tests, strict=True):
        if math.isfinite(t.p()) and t.p() * m < alpha and t.estimate != 0:
            hi, lo = (a, b) if d.sign * t.estimate > 0 else (b, a)
            better[(hi, lo)] = True
    means = d.values[labels].mean()
    out: dict[str, Any] = {"best": max(labels, key=lambda lb: d.sign * means[lb])}
    for i, lb in enumerate(labels[1:-1], start=1):
        left, right = labels[:i], labels[i + 1 :]
        if any((lb, o) in better for o in left) and any((lb, o) in better for o in right):
            out.setdefault("turn", ("peak", lb))  # better than a level on each side
        if any((o, lb) in better for o in left) and any((o, lb) in better for o in right):
            out.setdefault("turn", ("trough", lb))
    return out


# -- factorial grids ----------------------------------------------------------------------
def factorial(d: dz.Design, sesoi: float | None, alpha: float, expect: str) -> list[Question]:
    """One row per main effect and per two-way interaction, each a per-seed contrast (or a
    family of them for more than two levels). Main effect (two levels): the mean at the
    factor's last level minus its first, over every other factor; interaction (2x2): the
    difference of differences, the effect of a (last - first) at b's last level minus at
    b's first. More levels: Hotelling's T^2 or Bonferroni over every pair (inference.joint),
    the estimate the pair (or 2x2 sub-table) with the largest effect, Bonferroni interval."""
    out = []
    for f in d.factors:
        vals = d.orders[f]
        fam = [dz.main_pair(d, f, hi, lo) for lo, hi in dz.all_pairs_values(vals)]
        basis = [dz.main_pair(d, f, v, vals[0]) for v in vals[1:]]
        what = (
            f"{f}={vals[-1]} − {f}={vals[0]}"
            if len(vals) == 2
            else f"largest difference between {f} levels"
        )
        q = _term(d, f"main:{f}", "main", what, basis, fam, sesoi, alpha, expect)
        q.extra["factors"] = [f]
        q.extra["simple"] = simple_effects(d, f, alpha) if len(vals) == 2 else []
        out.append(q)
    for i, f in enumerate(d.factors):
        for g in d.factors[i + 1 :]:
            fv, gv = d.orders[f], d.orders[g]
            fam = [
                dz.dod(d, f, g, (f2, f1), (g2, g1))
                for f1, f2 in dz.all_pairs_values(fv)
                for g1, g2 in dz.all_pairs_values(gv)
            ]
            basis = [dz.dod(d, f, g, (a, fv[0]), (b, gv[0])) for a in fv[1:] for b in gv[1:]]
            what = (
                f"difference of differences (effect of {f} at {g}={gv[-1]} minus at {g}={gv[0]})"
                if len(fam) == 1
                else f"largest difference of differences of {f} × {g}"
            )
            q = _term(
                d, f"interaction:{f}:{g}", "interaction", what, basis, fam, sesoi, alpha, expect
            )
            q.extra["factors"] = [f, g]
            out.append(q)
    return out


def _term(d, name, family, what, basis, fam, sesoi, alpha, expect) -> Question:
    cols = sorted({lb for w in fam for lb in w})
    res = joint(
        d.values,
        basis,
        fam,
        alpha,
        f"{family} contrasts" if family == "main" else "interaction contrasts",
    )
    tests = res.family
    m = len(tests)
    ok = [t for t in tests if t.testable]
    if not ok:
        q = Question(
            name,
            "",
            expect,
            family,
            what,
            untestable(res.method),
            math.nan,
            sesoi or 0.0,
            alpha,
            res.method,
        )
        q.testable = False
        q.notes.append(
            "fewer than two seeds that finished every level, and fewer than two runs per level"
        )
        return q
    i, t = _pick(tests, lambda e: abs(e) if math.isfinite(e) else -1)
    if m == 1:
        t = tests[0]
    elif t.estimate < 0:
        t = _swap(t)
    exceeds = [x.exceeds(sesoi) for x in tests]
    tosts = [x.tost(sesoi) for x in tests]
    return Question(
        contrast=name,
        question="",
        expect=expect,
        family=family,
        what=what,
        test=t,
        p=res.p,
        margin=sesoi or 0.0,
        ci_alpha=alpha / m,
        method=res.method,
        tost_p=max(tosts) if sesoi and all(math.isfinite(x) for x in tosts) else math.nan,
        p_exceeds=min(1.0, m * min(exceeds))
        if all(math.isfinite(x) for x in exceeds)
        else math.nan,
        identical=identical(d.table, None, cols),
        testable=math.isfinite(res.p),
        n_a=t.n,
        n_b=t.n,
        power_family=m,
    )


def simple_effects(d: dz.Design, f: str, alpha: float) -> list[dict[str, Any]]:
    """The effect of a two-level factor f at each value of every other factor, with
    Bonferroni intervals over all of them."""
    lo, hi = d.orders[f][0], d.orders[f][-1]
    rows = [
        (g, v, linear(d.table, dz.simple_pair(d, f, hi, lo, {g: v})))
        for g in d.factors
        if g != f
        for v in d.orders[g]
    ]
    out = []
    for g, v, t in rows:
        ci = t.ci(alpha / max(1, len(rows)))
        out.append(
            {
                "at": f"{g}={v}",
                "estimate": t.estimate,
                "ci_low": ci[0],
                "ci_high": ci[1],
                "p": t.p(),
            }
        )
    return out


# -- Holm within each family ---------------------------------------------------------------
def adjust(questions: list[Question], alpha: float) -> None:
    """Holm over each family's claim p-values (p_adj) and each row's share of alpha."""
    from hpstudy.analysis.inference import holm_share

    for fam in dict.fromkeys(q.family for q in questions):
        members = [q for q in questions if q.family == fam]
        ps = [q.p_claim if q.testable and not q.identical else math.nan for q in members]
        for q, adj, share in zip(members, holm(ps), holm_share(ps, alpha), strict=True):
            q.p_adj = 1.0 if q.identical else adj
            q.share = share


def zero_test_adjusted(questions: list[Question]) -> dict[str, float]:
    """Holm over each family's tests of 0 (whatever the rows predict): which effects are
    significant at all, e.g. an interaction that makes a main effect depend on it."""
    out = {}
    for fam in dict.fromkeys(q.family for q in questions):
        members = [q for q in questions if q.family == fam]
        ps = [q.p if q.testable and not q.identical else math.nan for q in members]
        out.update({q.contrast: adj for q, adj in zip(members, holm(ps), strict=True)})
    return out
