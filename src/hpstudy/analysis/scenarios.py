"""The scenarios of the simulation suite (hpstudy.analysis.simulate): issue 20's list, the
null with equal noise, and two invented ones. Each returns the scenario and its power twin
(the same design with a true effect of twice the sesoi, or the scenario itself where it
already holds the effect to find); `scenarios()` lists them with the issue item they check.
Sizes: sesoi 0.01, a seed offset with SD 0.05 shared by every level, run noise SD 0.0075
(one seed's difference of two levels has SD ~ the sesoi)."""

from __future__ import annotations

from hpstudy.analysis.simulate import NOISE, SESOI, Scenario


def _two(name, expect, kind="list"):
    g = {"kind": kind, "factors": ["x"], "levels": {"a": {"x": 1}, "b": {"x": 2}}}
    if kind == "list":
        g["contrasts"] = [{"name": "ab", "a": "a", "b": "b", "expect": expect}]
    else:
        g["expect"] = {"none": True}
    return g


def _trend(expect="decreasing"):
    levels = {f"bs{b}": {"bs": b} for b in (16, 32, 64)}
    return {
        "kind": "grid",
        "factors": ["bs"],
        "levels": levels,
        "expect": {"trend": expect, "scale": "log2"},
    }


def _grid2x2():
    levels = {f"lr{a}_bs{b}": {"lr": a, "bs": b} for a in (1, 3) for b in (16, 64)}
    return {"kind": "grid", "factors": ["lr", "bs"], "levels": levels}


def _levels(k=3):
    return {
        "kind": "grid",
        "factors": ["sched"],
        "levels": {f"s{i}": {"sched": f"s{i}"} for i in range(k)},
    }


def _means(groups, values=None):
    values = values or {}
    return {
        (g, lb): values.get((g, lb), 0.9) for g, spec in groups.items() for lb in spec["levels"]
    }


DIRECTIONAL = ["supported", "contradicted"]
ANY_EFFECT = ["supported", "contradicted", "differs", "depends", "CI excludes 0"]


def null_equal(seeds=5) -> tuple[Scenario, Scenario]:
    groups = {
        "contrast": {
            "kind": "list",
            "factors": ["x"],
            "levels": {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}},
            "contrasts": [
                {"name": "ab", "a": "a", "b": "b", "expect": "a_better"},
                {"name": "cb", "a": "c", "b": "b"},
                {"name": "ac", "a": "a", "b": "c", "expect": "equal"},
            ],
        },
        "trend": _trend(),
        "levels": _levels(),
        "grid": _grid2x2(),
        "none": _two("none", "", kind="grid"),
    }
    false = {
        ("contrast", "(group)"): ["differs"],
        ("contrast", "ab"): ["supported", "contradicted"],
        ("contrast", "cb"): ["differs"],
        ("contrast", "ac"): ["contradicted"],
        ("trend", "(group)"): ["supported", "contradicted", "differs", "not monotone"],
        ("levels", "(group)"): ["differs", "CI excludes 0"],
        ("grid", "main:lr"): ["differs", "depends"],
        ("grid", "main:bs"): ["differs", "depends"],
        ("grid", "interaction:lr:bs"): ["differs"],
        ("none", "(group)"): ["contradicted"],
    }
    null = Scenario("null, equal noise", groups, _means(groups), false, seeds)
    s2 = 2 * SESOI
    effects = {
        ("contrast", "a"): 0.9 + s2,
        ("contrast", "c"): 0.9 + s2,
        ("trend", "bs16"): 0.9 + s2,
        ("trend", "bs32"): 0.9 + SESOI,
        ("levels", "s1"): 0.9 + s2,
        **{("grid", f"lr3_bs{b}"): 0.9 + s2 for b in (16, 64)},
        ("none", "b"): 0.9 + s2,
    }
    correct = {
        ("contrast", "ab"): ["supported"],
        ("contrast", "cb"): ["differs"],
        ("trend", "(group)"): ["supported"],
        ("levels", "(group)"): ["differs"],
        ("grid", "main:lr"): ["differs"],
        ("none", "(group)"): ["contradicted"],
    }
    power = Scenario("", groups, _means(groups, effects), {}, seeds, correct=correct)
    return null, power


def no_effect_predicted(fraction: float, seeds=10) -> tuple[Scenario, Scenario]:
    groups = {"eq": _two("eq", "equal"), "none": _two("none", "", kind="grid")}
    false = {("eq", "ab"): ["contradicted"], ("none", "(group)"): ["contradicted"]}

    def means(effect):
        return _means(groups, {("eq", "a"): 0.9 + effect, ("none", "b"): 0.9 + effect})

    sc = Scenario(
        f"predicts no effect, true effect {fraction} x sesoi",
        groups,
        means(fraction * SESOI),
        false,
        seeds,
    )
    correct = {("eq", "ab"): ["contradicted"], ("none", "(group)"): ["contradicted"]}
    return sc, Scenario("", groups, means(2 * SESOI), {}, seeds, correct=correct)


def unequal_noise(seeds: int) -> tuple[Scenario, Scenario]:
    groups = {"levels": _levels(), "trend": _trend(), "grid": _grid2x2()}
    noise = {("levels", "s2"): 0.34, ("trend", "bs64"): 0.34, ("grid", "lr3_bs64"): 0.34}
    false = {
        ("levels", "(group)"): ["differs", "CI excludes 0"],
        ("trend", "(group)"): ["supported", "contradicted", "differs"],
        ("grid", "main:lr"): ["differs", "depends"],
        ("grid", "main:bs"): ["differs", "depends"],
        ("grid", "interaction:lr:bs"): ["differs"],
    }
    sc = Scenario(
        f"unequal noise (one level SD 0.34, others {NOISE}), {seeds} seeds",
        groups,
        _means(groups),
        false,
        seeds,
        noise=noise,
    )
    s2 = 2 * SESOI
    effects = {
        ("levels", "s1"): 0.9 + s2,
        ("trend", "bs16"): 0.9 + s2,
        ("trend", "bs32"): 0.9 + SESOI,
    }
    effects.update({("grid", f"lr3_bs{b}"): 0.9 + s2 for b in (16, 64)})
    correct = {
        ("levels", "(group)"): ["differs"],
        ("trend", "(group)"): ["supported"],
        ("grid", "main:lr"): ["differs"],
    }
    return sc, Scenario(
        "", groups, _means(groups, effects), {}, seeds, correct=correct, noise=noise
    )


def curved(height: float, seeds=10) -> tuple[Scenario, Scenario]:
    """A symmetric inverted U: the middle level `height` x sesoi better than both ends (the
    least-squares slope on log2 is 0)."""
    groups = {"trend": _trend()}
    means = _means(groups, {("trend", "bs32"): 0.9 + height * SESOI})
    false = {("trend", "(group)"): ["supported", "contradicted", "no relevant effect"]}
    correct = {("trend", "(group)"): ["differs", "not monotone"]}
    sc = Scenario(
        f"curved: inverted U, {height} x sesoi high, {seeds} seeds",
        groups,
        means,
        false,
        seeds,
        correct=correct,
    )
    return sc, sc


def crossover(dod: float, seeds=10) -> Scenario:
    """A pure crossover: the effect of lr is +dod/2 at bs16 and -dod/2 at bs64 (main effects
    0, difference of differences dod)."""
    groups = {"grid": _grid2x2()}
    h = dod * SESOI / 4
    means = _means(
        groups,
        {
            ("grid", "lr3_bs16"): 0.9 + h,
            ("grid", "lr1_bs16"): 0.9 - h,
            ("grid", "lr3_bs64"): 0.9 - h,
            ("grid", "lr1_bs64"): 0.9 + h,
        },
    )
    false = {
        ("grid", "main:lr"): ["no relevant effect", "differs"],
        ("grid", "main:bs"): ["no relevant effect", "differs"],
        ("grid", "interaction:lr:bs"): ["no relevant effect"],
    }
    correct = {
        ("grid", "main:lr"): ["depends"],
        ("grid", "main:bs"): ["depends"],
        ("grid", "interaction:lr:bs"): ["differs"],
    }
    return Scenario(
        f"2x2 crossover, difference of differences {dod} x sesoi",
        groups,
        means,
        false,
        seeds,
        correct=correct,
    )


def negligible(fraction=0.3, seeds=20) -> tuple[Scenario, Scenario]:
    groups = {"dir": _two("dir", "a_better")}
    noise = {("dir", "a"): 0.003, ("dir", "b"): 0.003}

    def means(effect):
        return _means(groups, {("dir", "a"): 0.9 + effect})

    false = {("dir", "ab"): ["relevant", "contradicted"]}
    sc = Scenario(
        f"directional prediction, true effect {fraction} x sesoi, {seeds} seeds",
        groups,
        means(fraction * SESOI),
        false,
        seeds,
        noise=noise,
    )
    power = Scenario(
        "",
        groups,
        means(2 * SESOI),
        {},
        seeds,
        correct={("dir", "ab"): ["supported", "relevant"]},
        noise=noise,
    )
    return sc, power


def failures(seeds=5) -> tuple[Scenario, Scenario]:
    """b is a's configuration (the same numbers on every seed) but fails on one seed; in
    another group a is 2 x sesoi better among finished seeds but fails on 2 of 5."""
    groups = {"same": _two("same", "equal"), "fails": _two("fails", "a_better")}
    means = _means(groups, {("fails", "a"): 0.9 + 2 * SESOI})
    false = {
        ("same", "ab"): ["identical by construction"],
        ("fails", "ab"): ["unqualified", "contradicted"],
    }
    sc = Scenario(
        "failures: identical configs where one side fails once; a better side that fails 2 of 5",
        groups,
        means,
        false,
        seeds,
        correct={("fails", "ab"): ["supported"]},
        fails={("same", "b"): 1, ("fails", "a"): 2},
        copies={("same", "b"): ("same", "a")},
    )
    return sc, sc


def list_interaction(dod: float, seeds=10) -> tuple[Scenario, Scenario]:
    """A 2x2 interaction asked as a list contrast of the diagonals and as a factorial grid."""
    grid = _grid2x2()
    listed = {
        "kind": "list",
        "factors": ["lr", "bs"],
        "levels": grid["levels"],
        "contrasts": [
            {"name": "lr_x_bs", "a": ["lr3_bs64", "lr1_bs16"], "b": ["lr1_bs64", "lr3_bs16"]}
        ],
    }
    groups = {"grid": grid, "list": listed}

    def means(d):
        return _means(groups, {(g, "lr3_bs64"): 0.9 + d * SESOI for g in groups})

    false = {
        ("grid", "interaction:lr:bs"): ["no relevant effect"],
        ("list", "lr_x_bs"): ["no relevant effect"],
    }
    sc = Scenario(
        f"interaction asked as a list contrast, difference of differences {dod} x sesoi",
        groups,
        means(dod),
        false,
        seeds,
    )
    correct = {("grid", "interaction:lr:bs"): ["differs"], ("list", "lr_x_bs"): ["differs"]}
    return sc, Scenario("", groups, means(2.0), {}, seeds, correct=correct)


def selection(k=5, seeds=3) -> tuple[Scenario, Scenario]:
    groups = {"levels": _levels(k)}
    false = {("levels", "(group)"): ["differs", "CI excludes 0"]}
    sc = Scenario(
        f"best vs worst of {k} levels, {seeds} seeds, no effect",
        groups,
        _means(groups),
        false,
        seeds,
    )
    power = Scenario(
        "",
        groups,
        _means(groups, {("levels", "s1"): 0.9 + 2 * SESOI}),
        {},
        seeds,
        correct={("levels", "(group)"): ["differs"]},
    )
    return sc, power


def seeds_needed_power() -> tuple[Scenario, Scenario]:
    """A 2x2 main effect of exactly the sesoi at the seeds seeds_needed asks for (one seed's
    main-effect contrast has SD NOISE; Holm over the two main effects: alpha / 2)."""
    from hpstudy.analysis.power import seeds_needed

    n = int(seeds_needed(NOISE, SESOI, 0.05 / 2, paired=True))
    groups = {"grid": _grid2x2()}
    means = _means(groups, {("grid", f"lr3_bs{b}"): 0.9 + SESOI for b in (16, 64)})
    false = {("grid", "main:bs"): ["differs", "depends"]}
    sc = Scenario(
        f"2x2 main effect = sesoi at the {n} seeds seeds_needed suggests",
        groups,
        means,
        false,
        n,
        correct={("grid", "main:lr"): ["differs"]},
    )
    return sc, sc


def monotone_concave(seeds=10) -> tuple[Scenario, Scenario]:
    groups = {"trend": _trend("increasing")}
    means = _means(groups, {("trend", "bs32"): 0.9 + 2 * SESOI, ("trend", "bs64"): 0.9 + 2 * SESOI})
    false = {("trend", "(group)"): ["not monotone", "contradicted"]}
    sc = Scenario(
        "monotone but curved (rises, then flat), 10 seeds",
        groups,
        means,
        false,
        seeds,
        correct={("trend", "(group)"): ["supported"]},
    )
    return sc, sc


def unshared(seeds=5) -> tuple[Scenario, Scenario]:
    groups = {"levels": _levels(), "contrast": _two("contrast", "a_better")}
    noise = {("levels", "s2"): 0.05, ("contrast", "b"): 0.05}
    false = {("levels", "(group)"): ["differs", "CI excludes 0"], ("contrast", "ab"): DIRECTIONAL}
    sc = Scenario(
        "seeds not shared (an export with its own seeds), unequal noise, 5 seeds",
        groups,
        _means(groups),
        false,
        seeds,
        noise=noise,
        shared_seeds=False,
    )
    effects = {("levels", "s1"): 0.9 + 2 * SESOI, ("contrast", "a"): 0.9 + 2 * SESOI}
    power = Scenario(
        "",
        groups,
        _means(groups, effects),
        {},
        seeds,
        correct={("levels", "(group)"): ["differs"], ("contrast", "ab"): ["supported"]},
        noise=noise,
        shared_seeds=False,
    )
    return sc, power


def scenarios() -> list[tuple[str, Scenario, Scenario]]:
    """(the issue item it checks, the scenario, its power twin)."""
    cross = crossover(4.0)
    return [
        ("null", *null_equal()),
        ("1", *no_effect_predicted(0.9)),
        ("1", *no_effect_predicted(0.5)),
        ("2", *unequal_noise(3)),
        ("2", *unequal_noise(5)),
        ("3", *curved(2.0)),
        ("3", *curved(18.0)),
        ("4", cross, crossover(2.0)),
        ("5", *negligible()),
        ("6", *failures()),
        ("7", *list_interaction(1.5)),
        ("8", *selection()),
        ("9", *seeds_needed_power()),
        ("invented", *monotone_concave()),
        ("invented", *unshared()),
    ]
