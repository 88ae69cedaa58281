# Helper Python of the workflow: config validation, study loading, named input functions.
import json
import os
import sys
from functools import cache
from pathlib import Path

from snakemake.utils import validate

from hpstudy import cost, integrity, rounds
from hpstudy.config import config_hash
from hpstudy.data_checks import Source
from hpstudy.datasets import missing_files
from hpstudy.study import load_study
from hpstudy.studyfile import StudyError, parse_seeds_override
from hpstudy.studyfile import validate as validate_schema

# `--config allow_partial=true` arrives as the string "true" (Snakemake parses only True/False)
for _key in ("allow_partial", "tensorboard", "fuse_seeds"):
    if isinstance(config.get(_key), str) and config[_key].lower() in ("true", "false"):
        config[_key] = config[_key].lower() == "true"

# Our validator first: one line per error naming the key, the value and what is allowed.
try:
    validate_schema(config, "config.schema.yaml", "config (--configfile/--config)")
except StudyError as err:
    sys.exit(f"hpstudy: invalid config: {err}")
validate(config, schema="../schemas/config.schema.yaml")  # fills in the defaults


# The training image (containers/hpstudy.def); used only with
# --software-deployment-method apptainer (opt-in: see containers/README.md).
container: config["container_image"]


R = config["results_dir"].rstrip("/")
REPORTS = config["reports_dir"].rstrip("/")
STUDY_NAMES = [s.strip() for s in str(config["study"]).split(",") if s.strip()]
# `--config seeds=...` replaces every study's seeds (a shipped study run sequentially);
# Snakemake hands it over as a string or a mapping of strings: parsed here, checked by
# load_study as the study file's own `seeds` would be, before any job runs
try:
    SEEDS = parse_seeds_override(config.get("seeds"))
except StudyError as err:
    sys.exit(f"hpstudy: invalid config: {err}")


# What runs once, at the start (not again in each job's process): the studies' warnings, the
# cost line, the check of finished results.
ON_START = not (workflow.remote_exec or workflow.subprocess_exec)


def say(line):
    print(line, file=sys.stderr, flush=True)


@cache
def microbead_source():
    """The microbead images the workflow will prepare: a folder's (its density.csv rows;
    their size and channels are read only when preparing) or the generated set."""
    if not config["microbead_dir"]:
        s = config["synthetic"]
        return Source(s["n_images"], s["image_size"], 1)
    try:
        with open(Path(config["microbead_dir"]) / "density.csv") as fh:
            return Source(max(sum(1 for line in fh if line.strip()) - 1, 0))
    except OSError:  # reported, with the fix, before any job runs (dataset_location)
        return Source()


@cache
def get_study(name):
    """The expanded study (with the `seeds` override), checked against its data; a bad
    study file stops the workflow before any job runs."""
    try:
        return load_study(
            Path(config["studies_dir"]) / f"{name}.yaml",
            SEEDS,
            source=microbead_source(),
            log=say if ON_START else None,
        )
    except StudyError as err:
        sys.exit(f"hpstudy: invalid study: {err}")


for _name in STUDY_NAMES:
    for _warning in get_study(_name).warnings if ON_START else ():
        say(f"hpstudy: warning: {_warning}")


wildcard_constraints:
    study="[A-Za-z0-9][A-Za-z0-9_]*",
    cfg=r"[0-9a-f]{10}",
    dataset=r"[a-z0-9_]+-[0-9a-f]{10}",
    tag=r"n\d+-px\d+-seed\d+",
    k=r"[1-9][0-9]*",


def synthetic_tag():
    s = config["synthetic"]
    return f"n{s['n_images']}-px{s['image_size']}-seed{s['seed']}"


def dataset_location(spec):
    """Where the raw data of a dataset spec lives (a folder, or the root for CIFAR/MNIST)."""
    name = spec["name"]
    if name == "microbeads":
        if config["microbead_dir"]:
            location = Path(config["microbead_dir"]).resolve()
            if missing_files(name, location):  # before any job runs
                sys.exit(
                    f"hpstudy: dataset microbeads: microbead_dir={location} "
                    + ("has no density.csv" if location.is_dir() else "does not exist")
                    + "; point --config microbead_dir=PATH at a folder of images with "
                    "density.csv (columns filename,density)"
                )
            return str(location)
        return f"{R}/datasets/microbeads-synthetic-{synthetic_tag()}"
    key = "vgg_cells_dir" if name == "vgg_cells" else "data_root"
    if not config[key]:
        sys.exit(
            f"hpstudy: dataset {name} needs --config {key}=PATH (a folder holding "
            + (
                "NNNcell.png + NNNdots.png)"
                if name == "vgg_cells"
                else "cifar-10-batches-py/, cifar-100-python/ or MNIST/raw/)"
            )
        )
    location = Path(config[key]).resolve()
    missing = missing_files(name, location)
    if missing:  # checked before any job runs: no download happens at run time
        sys.exit(
            f"hpstudy: dataset {name}: {key}={location} lacks {missing[:6]}; point "
            f"--config {key}=PATH at a folder that has them (see docs/studies.md)"
        )
    return str(location)


def dataset_key(spec):
    """Prepared datasets are shared by every study with the same spec and source."""
    return f"{spec['name']}-{config_hash({'spec': spec, 'source': dataset_location(spec)})}"


@cache
def prepared_specs():
    return {
        dataset_key(get_study(n).dataset): get_study(n).dataset for n in STUDY_NAMES
    }


def get_dataset_spec(wildcards):
    return prepared_specs()[wildcards.dataset]


def get_raw_dataset(wildcards):
    """The generated dataset folder, when no real folder is configured."""
    spec = get_dataset_spec(wildcards)
    location = dataset_location(spec)
    if spec["name"] == "microbeads" and not config["microbead_dir"]:
        return [location]
    return []


def get_prepared(wildcards):
    return _prepared_path(wildcards.study)


def get_manifest(wildcards):
    return _prepared_path(wildcards.study).removesuffix("prepared.pt") + "manifest.json"


@cache
def _prepared_path(study):
    # once per study, not once per run (hashing the spec 10,000 times showed in profiles)
    return f"{R}/prepared/{dataset_key(get_study(study).dataset)}/prepared.pt"


def get_configs(wildcards):
    """Config id -> the experiments sharing it (study order)."""
    return get_study(wildcards.study).configs()


def get_train_config(wildcards):
    """The resolved training config of one distinct configuration (without its seed)."""
    study = get_study(wildcards.study)
    try:
        exps = study.configs()[wildcards.cfg]
    except KeyError:
        raise ValueError(
            f"hpstudy: {wildcards.cfg!r} is not a configuration of study {study.name} "
            f"({study.path}); see {R}/{study.name}/experiments.tsv (column config_hash)"
        ) from None
    cfg = exps[0].config.to_dict()
    cfg.pop("seed")
    return cfg


def get_seeds(wildcards):
    return list(get_study(wildcards.study).seeds)


def get_keep_dir(wildcards):
    """Checkpoints and finished seeds, outside the declared outputs: Snakemake deletes a
    failed job's outputs, and a rerun must not train a finished seed again."""
    return f"{R}/{wildcards.study}/checkpoints/{wildcards.cfg}"


def get_tensorboard_dir(wildcards):
    """TensorBoard event folder of a configuration's runs (seed{N}/ below it), named after
    the first experiment that uses it ("" when config tensorboard is false)."""
    if not config["tensorboard"]:
        return ""
    first = get_study(wildcards.study).configs()[wildcards.cfg][0]
    return f"{R}/{wildcards.study}/tensorboard/{first.id}"


# -- cost: one line per study at the start, each train job's walltime from its estimate --------
WALLTIME = cost.load_policy(Path(workflow.basedir) / "profiles" / "walltime.yaml")
ESTIMATE = os.environ.get("HPSTUDY_ESTIMATE", "on") != "off" and ON_START


def microbead_images(study):
    """Images the study's dataset starts from (None: not a microbead study)."""
    if study.dataset["name"] != "microbeads":
        return None
    return microbead_source().images


@cache
def calibration(threads, device_profile=None):
    return cost.Calibration(threads=threads, device_profile=device_profile)


@cache
def run_estimate(study, cfg):
    """Estimated cost of one run (one seed) of a configuration: on the device of the walltime
    policy's device profile, else on this machine with one thread (a local train job's).
    """
    s = get_study(study)
    return cost.estimate_run(
        s.configs()[cfg][0].config,
        s.dataset,
        calibration(1, WALLTIME.device_profile),
        microbead_images(s),
    )


def train_runtime_minutes(wildcards, attempt):
    """Walltime of a train job (every seed of one configuration): its runs' estimate x
    factor x attempt, clamped (profiles/walltime.yaml); a retry after a walltime kill gets
    more. Without an estimate (HPSTUDY_ESTIMATE=off): 120 minutes per seed x attempt."""
    runs = len(
        get_round_seeds(wildcards) if hasattr(wildcards, "k") else get_seeds(wildcards)
    )
    if not ESTIMATE:
        return 120 * runs * attempt
    estimate = run_estimate(wildcards.study, wildcards.cfg)
    return cost.walltime_minutes(estimate.wall_s, runs, attempt, WALLTIME)


if ESTIMATE:
    for _name in STUDY_NAMES:
        _study = get_study(_name)
        print(
            cost.one_line(
                _study,
                calibration(1),
                microbead_images(_study),
                os.cpu_count(),
                rounds.progress(_study, R),  # sequential: the runs planned so far
            ),
            file=sys.stderr,
        )
    _runtime = workflow.resource_settings.overwrite_resources.get("train", {}).get(
        "runtime"
    )
    _runtime = getattr(_runtime, "raw", _runtime)
    if _runtime is not None and "attempt" not in str(_runtime):
        print(
            f"hpstudy: warning: --set-resources train:runtime={_runtime} "
            "replaces the walltime from each run's estimate x attempt: a retry after a "
            "walltime kill gets no more time; write it with attempt, e.g. "
            "train:runtime='120*attempt'",
            file=sys.stderr,
        )


# -- damaged results (issue 21): every published seed against its checksums ---------------
def published_runs(study):
    """The output folders of a study's finished train jobs -> the seeds each holds (None
    where a sequential study's rounds decide them)."""
    s = get_study(study)
    if s.plan is None:
        folders = {f"{R}/{study}/runs/{cfg}": s.seeds for cfg in s.configs()}
    else:
        folders = {str(p): None for p in Path(f"{R}/{study}/rounds").glob("*/runs/*")}
    return {folder: seeds for folder, seeds in folders.items() if os.path.isdir(folder)}


def find_damage():
    """Published folder -> what is wrong in it; said at the start, with the repair."""
    damage = {}
    for name in STUDY_NAMES:
        for folder, seeds in published_runs(name).items():
            problems = integrity.damaged_seeds(folder, seeds)
            if problems:
                damage[folder] = problems
    for folder, problems in damage.items():
        for problem in problems:
            say(f"hpstudy: damaged: {problem}")
    if damage:
        say(
            "hpstudy: repairing: the train jobs of "
            + ", ".join(damage)
            + " run again (each seed is copied again from its kept copy under "
            "checkpoints/, or trained again where that is damaged too); by hand: "
            "snakemake --forcerun " + " ".join(damage)
        )
    for name in STUDY_NAMES:
        for ckpt in sorted(Path(f"{R}/{name}/checkpoints").glob("*/seed*.pt")):
            problem = integrity.checkpoint_problem(ckpt)
            if problem:
                say(
                    f"hpstudy: warning: checkpoint {ckpt} is unreadable ({problem}); "
                    f"{ckpt.stem} of configuration {ckpt.parent.name} trains again from "
                    "scratch"
                )
    return damage


DAMAGED = find_damage() if ON_START else {}


def repair_damaged(wildcards):
    """No input: reruns this train job when its published seeds are damaged (DAMAGED), as
    `--forcerun` would, by adding its output to the DAG's forced files while the DAG is
    built (a Snakemake internal; without it the start line above names the command)."""
    folder = f"{R}/{wildcards.study}/" + (
        f"rounds/{wildcards.k}/" if hasattr(wildcards, "k") else ""
    )
    folder += f"runs/{wildcards.cfg}"
    forced = getattr(getattr(workflow, "dag", None), "forcefiles", None)
    if folder in DAMAGED and isinstance(forced, set):
        forced.add(folder)
    return []


# -- sequential studies (issue 11): rounds decided by the checkpoint decide_round ----------
def round_decision(study, k):
    """The decision after round k (rounds/round{k}.yaml); until it exists Snakemake stops
    evaluating here and re-evaluates the DAG once the checkpoint has run."""
    import yaml

    path = checkpoints.decide_round.get(study=study, k=str(k)).output.decision
    with open(path) as fh:
        return yaml.safe_load(fh)


def round_config_seeds(study, k):
    """Config id -> seeds its train job of round k runs (the most any experiment using it
    was given); a configuration absent from the dict does not train in round k."""
    s = get_study(study)
    if k == 1:
        return {cfg: s.plan.initial for cfg in s.configs()}
    decision = round_decision(study, k - 1)
    out = {}
    for cfg, exps in s.configs().items():
        now = max(decision["seeds"].get(e.id, 0) for e in exps)
        nxt = max(decision["seeds_next"].get(e.id, 0) for e in exps)
        if nxt > now:
            out[cfg] = nxt
    return out


def last_trained(study, k):
    """Config id -> the last round <= k that trained it (its record holds all its seeds)."""
    out = {}
    for j in range(1, k + 1):
        out.update({cfg: j for cfg in round_config_seeds(study, j)})
    return out


def final_round(study):
    """The round whose decision says the study is done."""
    k = 1
    while not round_decision(study, k)["done"]:
        k += 1
    return k


def get_round_seeds(wildcards):
    s = get_study(wildcards.study)
    return s.seeds[
        : round_config_seeds(wildcards.study, int(wildcards.k))[wildcards.cfg]
    ]


def get_round_records(wildcards):
    k = int(wildcards.k)
    return [
        f"{R}/{wildcards.study}/rounds/{j}/records/{cfg}.json"
        for cfg, j in last_trained(wildcards.study, k).items()
    ]


def get_previous_round(wildcards):
    k = int(wildcards.k)
    return [f"{R}/{wildcards.study}/rounds/round{k - 1}.yaml"] if k > 1 else []


def get_rounds_file(wildcards):
    """The last round file of a sequential study (aggregate reads its verdicts); none else."""
    if get_study(wildcards.study).plan is None:
        return []
    return [f"{R}/{wildcards.study}/rounds/round{final_round(wildcards.study)}.yaml"]


def get_records(wildcards):
    study = get_study(wildcards.study)
    if study.plan is not None:  # each configuration's record from its last round
        return [
            f"{R}/{study.name}/rounds/{j}/records/{cfg}.json"
            for cfg, j in last_trained(study.name, final_round(study.name)).items()
        ]
    configs = list(study.configs())
    if config["allow_partial"]:  # configurations whose train job finished
        configs = [c for c in configs if Path(f"{R}/{study.name}/runs/{c}").is_dir()]
    return [f"{R}/{study.name}/records/{c}.json" for c in configs]


def get_records_of(kind):
    def named(wildcards):
        return [r.removesuffix(".json") + kind for r in get_records(wildcards)]

    return named


def get_all_runs(wildcards):
    study = get_study(wildcards.study)
    if study.plan is not None:  # the seeds each configuration ran by the last round
        k = final_round(study.name)
        seeds = {}
        for j in range(1, k + 1):
            seeds.update(round_config_seeds(study.name, j))
        return [
            f"{e.id}/seed{s}"
            for e in study.experiments
            for s in study.seeds[: seeds[e.config_id]]
        ]
    return [f"{exp}/seed{seed}" for exp, seed in study.runs()]


def get_study_file(wildcards):
    return str(get_study(wildcards.study).path)


def get_group_tables(wildcards):
    study = get_study(wildcards.study)
    return {g: f"{R}/{study.name}/groups/{g}.csv" for g in study.groups}


def get_final_outputs(wildcards):
    outputs = []
    for name in STUDY_NAMES:
        outputs += [
            f"{R}/{name}/experiments.tsv",
            f"{REPORTS}/{name}/report.md",
            f"{REPORTS}/{name}/report.html",
        ]
    return outputs


# Cheap bookkeeping never waits in a cluster queue.
localrules:
    experiments,
    extract,
    extract_round,
    decide_round,
    aggregate,
    report,
