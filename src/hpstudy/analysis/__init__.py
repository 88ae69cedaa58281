"""Analysis v3 (issue 20): answer each group's question with the design that was run, with
verdicts that hold when levels differ in noise, when a response is curved and when factors
interact.

Entry point: `analyse_study(summary, doc)` with summary.csv (one row per run) and the study's
design (study.json's groups with kind/expect/contrasts, `sesoi`, `metric`, and the resolved
settings of every experiment). hpstudy.analyze builds both from a study file and a table of
runs from anywhere; the workflow's aggregate step calls it.

Modules, in the order a question flows through them:

- design:    the design recognised from a group (seed x level table, trend / factorial /
             levels, the weight vector each question tests)
- inference: the tests (per-seed one-sample t, Welch, Hotelling's T^2 or Bonferroni for
             several degrees of freedom, Fisher's exact test, Holm)
- questions: each question as tests: contrasts, trends with lack of fit, "do the levels
             differ?", factorial main effects and interactions
- rule:      the verdict rule (RULE), relevance, curved trends, effects that depend on
             another factor
- power:     the seeds an inconclusive question needs, at the level its answer uses
- levels:    per-level tables and checks (failures, convergence, unequal noise)
- variance:  the descriptive model (variance shares, factorial ANOVA table)
- recommend: the configuration to use, in agreement with the verdicts
- wording:   the words of each verdict and the worked example
- outputs:   stats.json, verdicts.csv, recommended.yaml
- study:     a group and a study put together
- simulate:  the simulation suite of docs/report.md (`hpstudy simulate analysis`), with
- scenarios: its studies of known truth (issue 20's list, the null, two invented ones)
"""

from hpstudy.analysis.inference import holm
from hpstudy.analysis.levels import t_interval
from hpstudy.analysis.outputs import json_safe, stats_document, write_outputs
from hpstudy.analysis.rule import ALPHA, POWER, RULE, VERDICTS, decide
from hpstudy.analysis.study import VERDICT_COLUMNS, analyse_group, analyse_study
from hpstudy.analysis.wording import ci_name, evidence, worked_example

__all__ = [
    "ALPHA",
    "POWER",
    "RULE",
    "VERDICTS",
    "VERDICT_COLUMNS",
    "analyse_group",
    "analyse_study",
    "ci_name",
    "decide",
    "evidence",
    "holm",
    "json_safe",
    "stats_document",
    "t_interval",
    "worked_example",
    "write_outputs",
]
