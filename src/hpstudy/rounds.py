"""Where a sequential study stands, from its round files on disk (issue 11).

`results/{study}/rounds/round{k}.yaml` (the checkpoint decide_round) says which experiments
get more seeds next. Before a round file exists the study is in round 1 with `initial` seeds
of every experiment; after round k's file it is in round k + 1 with that file's `seeds_next`,
or finished when the file says `done`. The workflow's start line and `hpstudy
status` count the runs planned so far this way, not `max` seeds of everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass
class Progress:
    round: int  # the round running now (the last one when done)
    done: bool  # the last round file says every question is decided or at max
    seeds: dict[str, int]  # config id -> seeds planned so far
    max_seeds: int

    @property
    def runs(self) -> int:
        """Runs planned so far: each distinct configuration trains its seeds once."""
        return sum(self.seeds.values())

    @property
    def runs_at_max(self) -> int:
        return self.max_seeds * len(self.seeds)

    def text(self) -> str:
        """'round 2: 26 runs planned so far, up to 70 if every question needs max seeds'."""
        if self.done:
            return (
                f"finished in round {self.round}: {self.runs} runs, "
                f"{self.runs_at_max - self.runs} fewer than {self.runs_at_max} at max seeds"
            )
        return (
            f"round {self.round}: {self.runs} runs planned so far, up to {self.runs_at_max} "
            "if every question needs max seeds"
        )


def round_files(results: str | Path, study: str) -> list[Path]:
    """round1.yaml, round2.yaml, ... as far as they go without a gap."""
    folder = Path(results) / study / "rounds"
    out = []
    while (folder / f"round{len(out) + 1}.yaml").is_file():
        out.append(folder / f"round{len(out) + 1}.yaml")
    return out


def progress(study, results: str | Path) -> Progress | None:
    """The sequential `study`'s round and the seeds planned so far per configuration; None
    for a fixed study. Round files of another plan (other looks: the `seeds` override
    changed) are not this plan's and are ignored."""
    plan = study.plan
    if plan is None:
        return None
    per_exp = {e.id: plan.initial for e in study.experiments}
    k, done = 1, False
    for path in round_files(results, study.name):
        decision = yaml.safe_load(path.read_text()) or {}
        if list(decision.get("looks") or []) != plan.looks:
            break
        per_exp.update(decision.get("seeds_next") or {})
        done = bool(decision.get("done"))
        k = int(decision.get("round", k)) + (0 if done else 1)
    seeds = {
        cfg: max(per_exp.get(e.id, plan.initial) for e in exps)
        for cfg, exps in study.configs().items()
    }
    return Progress(round=k, done=done, seeds=seeds, max_seeds=plan.max)


# -- what the report says about the rounds (aggregate writes it; the report only reads) ----
STOPPED = {"decided": "decided", "at max": "at max", "futile": "futile"}


def question_runs(study, experiments: list[str], seeds: int) -> tuple[int, int]:
    """Runs a question's distinct configurations train at `seeds` each, and at max."""
    configs = {study.experiment(e).config_id for e in experiments}
    return seeds * len(configs), study.plan.max * len(configs)


def verdict_table(decision: dict, study):
    """verdicts.csv of a sequential study: each question's row from the round that decided
    it (sequential.final_verdicts: `round`, `seeds`) plus why it stopped (`stopped`:
    decided / at max / futile, `why_stopped`), the look's nominal `level`, and the runs its
    configurations trained by then against `max` seeds (`runs`, `runs_at_max`)."""
    from hpstudy.sequential import final_verdicts

    table = final_verdicts(decision)
    extra = {"stopped": [], "why_stopped": [], "level": [], "runs": [], "runs_at_max": []}
    for q in decision["questions"]:
        runs, at_max = question_runs(study, q["experiments"], q["seeds"])
        extra["stopped"].append(q["status"])
        extra["why_stopped"].append(
            q.get("why")
            or f"{q['verdict']} at look {q['round']} with {q['seeds']} seeds "
            f"(level {q['level']:.3g})"
        )
        extra["level"].append(q["level"])
        extra["runs"].append(runs)
        extra["runs_at_max"].append(at_max)
    for column, values in extra.items():
        table[column] = values
    return table


def study_part(decision: dict, study) -> dict:
    """study.json's `sequential`: the plan, each round (look, level, questions decided,
    runs trained) and the study's runs against `max` seeds of every configuration."""
    plan = study.plan
    per_exp = {e.id: int(decision["seeds_next"].get(e.id, plan.initial)) for e in study.experiments}
    per_cfg = {cfg: max(per_exp[e.id] for e in exps) for cfg, exps in study.configs().items()}
    looks, levels = decision["looks"], decision["levels"]
    rounds = []
    for k in range(1, int(decision["round"]) + 1):
        before = looks[k - 2] if k > 1 else 0
        look = looks[min(k, len(looks)) - 1]
        rounds.append(
            {
                "round": k,
                "seeds": look,
                "level": levels[min(k, len(levels)) - 1],
                "decided": sum(
                    1 for q in decision["questions"] if q["round"] == k and q["status"] != "open"
                ),
                "runs": sum(max(0, min(n, look) - before) for n in per_cfg.values()),
            }
        )
    runs = sum(per_cfg.values())
    at_max = plan.max * len(per_cfg)
    return {
        "plan": {
            "initial": plan.initial,
            "max": plan.max,
            "step": plan.step,
            "futility": plan.futility,
            "spending": plan.spending,
        },
        "alpha": decision["alpha"],
        "looks": looks,
        "levels": levels,
        "final_round": int(decision["round"]),
        "rounds": rounds,
        "seeds": per_exp,
        "configs": len(per_cfg),
        "runs": runs,
        "runs_at_max": at_max,
        "runs_saved": at_max - runs,
    }
