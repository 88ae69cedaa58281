# Helper Python of the workflow: config validation, the studies, named input functions.
# What each function answers is decided in hpstudy.rule_inputs (plain Python, tested without
# Snakemake); here it meets Snakemake's objects: config, wildcards, checkpoints, workflow.
import functools
import os
import sys
from pathlib import Path

from snakemake.utils import validate

from hpstudy.rule_inputs import InputError, RuleInputs, parse_flags
from hpstudy.studyfile import StudyError
from hpstudy.studyfile import validate as validate_schema

parse_flags(config)  # `--config allow_partial=true` arrives as a string
# Our validator first: one line per error naming the key, the value and what is allowed.
try:
    validate_schema(config, "config.schema.yaml", "config (--configfile/--config)")
except StudyError as err:
    sys.exit(f"hpstudy: invalid config: {err}")
validate(config, schema="../schemas/config.schema.yaml")  # fills in the defaults


# The training image (containers/hpstudy.def); used only with
# --software-deployment-method apptainer (opt-in: see containers/README.md).
container: config["container_image"]


def round_decision(study, k):
    """The decision after round k (rounds/round{k}.yaml); until it exists Snakemake stops
    evaluating here and re-evaluates the DAG once the checkpoint has run."""
    import yaml

    path = checkpoints.decide_round.get(study=study, k=str(k)).output.decision
    with open(path) as fh:
        return yaml.safe_load(fh)


# What runs once, at the start (not again in each job's process): the studies' warnings, the
# cost line, the check of finished results.
ON_START = not (workflow.remote_exec or workflow.subprocess_exec)


def say(line):
    print(line, file=sys.stderr, flush=True)


try:
    INPUTS = RuleInputs(
        config,
        decision=round_decision,
        walltime=Path(workflow.basedir) / "profiles" / "walltime.yaml",
        # a job a cluster node runs keeps the walltime the head node gave it
        estimate=os.environ.get("HPSTUDY_ESTIMATE", "on") != "off" and ON_START,
        log=say if ON_START else None,
    )
except StudyError as err:  # `--config seeds=...`
    sys.exit(f"hpstudy: invalid config: {err}")
try:  # a bad study file (or one its data cannot serve) stops the workflow before any job
    INPUTS.load_studies()
except StudyError as err:
    sys.exit(f"hpstudy: invalid study: {err}")
for _line in INPUTS.warnings() if ON_START else ():
    say(_line)
R = INPUTS.results
REPORTS = INPUTS.reports
SEEDS = INPUTS.seeds_override


wildcard_constraints:
    study="[A-Za-z0-9][A-Za-z0-9_]*",
    cfg=r"[0-9a-f]{10}",
    dataset=r"[a-z0-9_]+-[0-9a-f]{10}",
    tag=r"n\d+-px\d+-seed\d+",
    k=r"[1-9][0-9]*",


def stops_on_input_error(get):
    """A named input function whose InputError (a data folder that is missing or lacks
    files) stops the workflow with its message, not inside Snakemake's traceback."""

    @functools.wraps(get)
    def named(wildcards):
        try:
            return get(wildcards)
        except InputError as err:
            sys.exit(f"hpstudy: {err}")

    return named


# -- datasets --------------------------------------------------------------------------------
@stops_on_input_error
def get_dataset_spec(wildcards):
    return INPUTS.prepared_specs()[wildcards.dataset]


@stops_on_input_error
def get_dataset_location(wildcards):
    return INPUTS.dataset_location(INPUTS.prepared_specs()[wildcards.dataset])


@stops_on_input_error
def get_raw_dataset(wildcards):
    return INPUTS.raw_dataset(wildcards.dataset)


@stops_on_input_error
def get_prepared(wildcards):
    return INPUTS.prepared(wildcards.study)


@stops_on_input_error
def get_manifest(wildcards):
    return INPUTS.manifest(wildcards.study)


# -- train jobs ------------------------------------------------------------------------------
def get_train_config(wildcards):
    return INPUTS.train_config(wildcards.study, wildcards.cfg)


def get_seeds(wildcards):
    return list(INPUTS.study(wildcards.study).seeds)


def get_keep_dir(wildcards):
    return INPUTS.keep_dir(wildcards.study, wildcards.cfg)


def get_tensorboard_dir(wildcards):
    return INPUTS.tensorboard_dir(wildcards.study, wildcards.cfg)


def train_runtime_minutes(wildcards, attempt):
    seeds = (
        get_round_seeds(wildcards) if hasattr(wildcards, "k") else get_seeds(wildcards)
    )
    return INPUTS.runtime_minutes(wildcards.study, wildcards.cfg, len(seeds), attempt)


if INPUTS.estimate:  # one cost line per study at the start
    _runtime = workflow.resource_settings.overwrite_resources.get("train", {})
    for _line in INPUTS.start_lines(_runtime.get("runtime")):
        say(_line)


# -- damaged results (issue 21): every published seed against its checksums ---------------
DAMAGED, _lines = INPUTS.damaged() if ON_START else ({}, [])
for _line in _lines:
    say(_line)


def repair_damaged(wildcards):
    """No input: reruns this train job when its published seeds are damaged (DAMAGED), as
    `--forcerun` would, by adding its output to the DAG's forced files while the DAG is
    built (a Snakemake internal; without it the start line above names the command)."""
    folder = INPUTS.train_output(
        wildcards.study, wildcards.cfg, getattr(wildcards, "k", None)
    )
    forced = getattr(getattr(workflow, "dag", None), "forcefiles", None)
    if folder in DAMAGED and isinstance(forced, set):
        forced.add(folder)
    return []


# -- sequential studies (issue 11): rounds decided by the checkpoint decide_round ----------
def get_round_seeds(wildcards):
    return INPUTS.round_seeds(wildcards.study, int(wildcards.k), wildcards.cfg)


def get_round_records(wildcards):
    return INPUTS.round_records(wildcards.study, int(wildcards.k))


def get_previous_round(wildcards):
    return INPUTS.previous_round(wildcards.study, int(wildcards.k))


def get_rounds_file(wildcards):
    return INPUTS.rounds_file(wildcards.study)


# -- aggregate and report --------------------------------------------------------------------
def get_study_file(wildcards):
    return str(INPUTS.study(wildcards.study).path)


def get_records(wildcards):
    return INPUTS.records(wildcards.study)


def get_records_of(kind):
    def named(wildcards):
        return [r.removesuffix(".json") + kind for r in get_records(wildcards)]

    return named


def get_all_runs(wildcards):
    return INPUTS.all_runs(wildcards.study)


def get_final_outputs(wildcards):
    return INPUTS.final_outputs()


# Cheap bookkeeping never waits in a cluster queue.
localrules:
    experiments,
    extract,
    extract_round,
    decide_round,
    aggregate,
    report,
