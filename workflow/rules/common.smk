# Helper Python of the workflow: config validation, study loading, named input functions.
import json
import re
import sys
from functools import cache
from pathlib import Path

from snakemake.utils import validate

from hpstudy.config import config_hash
from hpstudy.study import StudyError, load_study


validate(config, schema="../schemas/config.schema.yaml")

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

_IDS = sorted({e.id for n in STUDY_NAMES for e in get_study(n).experiments})


wildcard_constraints:
    study="[A-Za-z0-9][A-Za-z0-9_]*",
    exp="|".join(map(re.escape, _IDS)) if _IDS else "[^/]+",
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
            return str(Path(config["microbead_dir"]).resolve())
        return f"{R}/datasets/microbeads-synthetic-{synthetic_tag()}"
    if name == "vgg_cells":
        return str(Path(config["vgg_cells_dir"]).resolve())
    if not config["data_root"]:
        sys.exit(
            f"hpstudy: dataset {name} needs --config data_root=PATH (a folder holding "
            "cifar-10-batches-py/, cifar-100-python/ or MNIST/raw/)"
        )
    return str(Path(config["data_root"]).resolve())


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
    return f"{R}/prepared/{dataset_key(get_study(wildcards.study).dataset)}/prepared.pt"


def get_experiment(wildcards):
    return get_study(wildcards.study).experiment(wildcards.exp)


def get_train_config(wildcards):
    """The resolved training config of one run (the experiment's config + its seed)."""
    cfg = get_experiment(wildcards).config.to_dict()
    cfg["seed"] = int(wildcards.seed)
    return cfg


def get_checkpoint(wildcards):
    """Outside the declared outputs, so Snakemake keeps it when a job is incomplete."""
    return f"{R}/{wildcards.study}/checkpoints/{wildcards.exp}/seed{wildcards.seed}.pt"


def get_run_record_meta(wildcards):
    exp = get_experiment(wildcards)
    return {"group": exp.group, "label": exp.label}


def get_run_records(wildcards):
    study = get_study(wildcards.study)
    records = [
        f"{R}/{study.name}/runs/{exp}/seed{seed}/record.json" for exp, seed in study.runs()
    ]
    if config["allow_partial"]:
        return [r for r in records if Path(r).exists()]
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
