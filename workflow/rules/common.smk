# Helper Python of the workflow: config validation, study loading, named input functions.
import json
import sys
from functools import cache
from pathlib import Path

from snakemake.utils import validate

from hpstudy.config import config_hash
from hpstudy.datasets import missing_files
from hpstudy.study import EXPERIMENT_ID, StudyError, load_study
from hpstudy.study import validate as validate_schema


# `--config allow_partial=true` arrives as the string "true" (Snakemake parses only True/False)
for _key in ("allow_partial", "tensorboard"):
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


@cache
def get_study(name):
    """The expanded study; a bad study file stops the workflow before any job runs."""
    try:
        return load_study(Path(config["studies_dir"]) / f"{name}.yaml")
    except StudyError as err:
        sys.exit(f"hpstudy: invalid study: {err}")


for _name in STUDY_NAMES:
    get_study(_name)

# The id syntax, not an alternation of every id: matching each path against a
# 10,000-way alternation made the DAG build quadratic in the number of experiments.
_EXP_PATTERN = EXPERIMENT_ID.pattern.lstrip("^").rstrip("$")


wildcard_constraints:
    study="[A-Za-z0-9][A-Za-z0-9_]*",
    exp=_EXP_PATTERN,
    seed=r"\d+",
    dataset=r"[a-z0-9_]+-[0-9a-f]{10}",
    tag=r"n\d+-px\d+-seed\d+",


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


@cache
def _prepared_path(study):
    # once per study, not once per run (hashing the spec 10,000 times showed in profiles)
    return f"{R}/prepared/{dataset_key(get_study(study).dataset)}/prepared.pt"


def get_experiment(wildcards):
    study = get_study(wildcards.study)
    try:
        return study.experiment(wildcards.exp)
    except KeyError:
        raise ValueError(
            f"hpstudy: {wildcards.exp!r} is not an experiment of study {study.name} "
            f"({study.path}); see {R}/{study.name}/experiments.tsv for its ids"
        ) from None


def get_train_config(wildcards):
    """The resolved training config of one run (the experiment's config + its seed)."""
    cfg = get_experiment(wildcards).config.to_dict()
    cfg["seed"] = int(wildcards.seed)
    return cfg


def get_checkpoint(wildcards):
    """Outside the declared outputs, so Snakemake keeps it when a job is incomplete."""
    return f"{R}/{wildcards.study}/checkpoints/{wildcards.exp}/seed{wildcards.seed}.pt"


def get_tensorboard_dir(wildcards):
    """This run's TensorBoard event folder ("" when config tensorboard is false)."""
    if not config["tensorboard"]:
        return ""
    return f"{R}/{wildcards.study}/tensorboard/{wildcards.exp}/seed{wildcards.seed}"


def get_run_record_meta(wildcards):
    exp = get_experiment(wildcards)
    return {"group": exp.group, "label": exp.label}


def get_run_records(wildcards):
    study = get_study(wildcards.study)
    records = [
        f"{R}/{study.name}/runs/{exp}/seed{seed}/record.json" for exp, seed in study.runs()
    ]
    if config["allow_partial"]:  # runs whose training finished (their record is cheap)
        return [r for r in records if Path(r).with_name("metrics.json").exists()]
    return records


def get_all_runs(wildcards):
    return [f"{exp}/seed{seed}" for exp, seed in get_study(wildcards.study).runs()]


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
    aggregate,
    report,
