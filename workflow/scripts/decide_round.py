"""Checkpoint decide_round: the decision after round k of a sequential study (issue 11).

CLI: python decide_round.py STUDY_YAML MANIFEST ROUND OUT_YAML [PREVIOUS_YAML] -- RECORD.json...
(HPSTUDY_SEEDS='{initial: 3, max: 10}' stands for the workflow's --config seeds=...)
"""

import os
import sys

from hpstudy.logs import redirect_to


def main(study_file, manifest, round_, out, previous, records, seeds=None):
    import yaml

    from hpstudy.aggregate import round_inputs
    from hpstudy.atomic import write_text
    from hpstudy.sequential import decide_round

    study, summary, design = round_inputs(study_file, manifest, records, seeds)
    prior = None
    if previous:
        with open(previous) as fh:
            prior = yaml.safe_load(fh)
    decision = decide_round(summary, design, study.plan, int(round_), prior)
    for q in decision["questions"]:
        print(
            f"round {round_}: {q['group']} / {q['contrast']}: {q['verdict']} "
            f"({q['status']}, {q['seeds']} seeds)",
            file=sys.stderr,
        )
    text = yaml.safe_dump(decision, sort_keys=False, allow_unicode=True)
    write_text(out, f"# hpstudy: the decision after round {round_} (issue 11)\n" + text)


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    with redirect_to(sm.log[0]):
        main(
            sm.input.study,
            sm.input.manifest,
            sm.wildcards.k,
            sm.output.decision,
            sm.input.previous[0] if sm.input.previous else None,
            list(sm.input.records),
            sm.params.seeds,
        )
else:
    args = sys.argv[1:]
    head, records = args[: args.index("--")], args[args.index("--") + 1 :]
    from hpstudy.studyfile import parse_seeds_override

    seeds = parse_seeds_override(os.environ.get("HPSTUDY_SEEDS"))
    main(head[0], head[1], head[2], head[3], head[4] if len(head) > 4 else None, records, seeds)
