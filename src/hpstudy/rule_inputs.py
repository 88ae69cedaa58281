"""What the workflow's rules need from its config and its studies: the one place that turns
config/config.yaml and config/studies/*.yaml into the paths, params and resources of jobs.

workflow/rules/common.smk holds one named input function per need, each a line calling here,
and hands over what only Snakemake has (the rounds checkpoint's decisions). Everything here is
plain Python, so tests and tools can ask the same questions without Snakemake.

- studies:   each study named by `--config study=...`, with the `seeds` override
- datasets:  where a study's raw data lives (checked before any job runs), and the key its
             prepared file is shared under by every study with the same spec and source
- train:     a configuration's resolved config, seeds, checkpoint and TensorBoard folders,
             and its walltime from the cost estimate (profiles/walltime.yaml)
- rounds:    a sequential study's seeds per round, from the decisions of the rounds before
- aggregate: the records of a study (of its last round, or of its finished train jobs)
- damage:    published seeds that no longer match their checksums, to be trained or copied
             again (hpstudy.integrity)

A setting that cannot work raises InputError (a bad study file: StudyError) naming the setting
and the fix; common.smk prints it and stops the workflow.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpstudy import cost, integrity, rounds
from hpstudy.calibration import Calibration
from hpstudy.config import config_hash
from hpstudy.data_checks import Source
from hpstudy.datasets import missing_files
from hpstudy.study import Study, load_study
from hpstudy.studyfile import parse_seeds_override

FLAGS = ("allow_partial", "tensorboard", "fuse_seeds")  # booleans that `--config KEY=true` may set


class InputError(ValueError):
    """A workflow setting that cannot work; the message names it and the fix."""


def parse_flags(config: dict[str, Any]) -> None:
    """`--config allow_partial=true` arrives as the string "true" (Snakemake parses only
    True/False): such strings become booleans, in place, before validation."""
    for key in FLAGS:
        if isinstance(config.get(key), str) and config[key].lower() in ("true", "false"):
            config[key] = config[key].lower() == "true"


Decision = Callable[[str, int], dict[str, Any]]  # (study, k) -> rounds/round{k}.yaml


class RuleInputs:
    """The studies of one workflow run and what their jobs need.

    `config`: the validated workflow config (defaults filled in). `decision(study, k)`: the
    rounds checkpoint's decision after round k (common.smk asks Snakemake, which stops
    evaluating there until the checkpoint has run). `walltime`: profiles/walltime.yaml.
    `estimate`: whether train jobs get their walltime from a cost estimate (off for jobs a
    cluster node runs: the head node already decided it). `log`: hears what loading a large
    study says while it works (None in a job's process: said once, at the start)."""

    def __init__(
        self,
        config: dict[str, Any],
        decision: Decision | None = None,
        walltime: str | os.PathLike | None = None,
        estimate: bool = True,
        log: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.results = config["results_dir"].rstrip("/")
        self.reports = config["reports_dir"].rstrip("/")
        self.study_names = [s.strip() for s in str(config["study"]).split(",") if s.strip()]
        # `--config seeds=...` replaces every study's seeds (a shipped study run
        # sequentially); checked by load_study as the study file's own `seeds` would be
        self.seeds_override = parse_seeds_override(config.get("seeds"))
        self.decision = decision
        self.walltime = cost.load_policy(walltime)
        self.estimate = estimate
        self.log = log
        self._source: Source | None = None
        self._studies: dict[str, Study] = {}
        self._prepared: dict[str, str] = {}
        self._calibrations: dict[tuple, Calibration] = {}
        self._estimates: dict[tuple[str, str], cost.RunEstimate] = {}

    # ------------------------------------------------------------------------- studies

    def study(self, name: str) -> Study:
        """The expanded study (with the `seeds` override), checked against its data, loaded
        once."""
        if name not in self._studies:
            path = Path(self.config["studies_dir"]) / f"{name}.yaml"
            self._studies[name] = load_study(
                path, self.seeds_override, source=self.microbead_source(), log=self.log
            )
        return self._studies[name]

    def load_studies(self) -> list[Study]:
        """Every study of this run: a bad study file raises StudyError before any job runs."""
        return [self.study(name) for name in self.study_names]

    def warnings(self) -> list[str]:
        """What the studies' checks warn about (said once, at the start)."""
        return [f"hpstudy: warning: {w}" for s in self.load_studies() for w in s.warnings]

    # ------------------------------------------------------------------------- datasets

    def synthetic_tag(self) -> str:
        s = self.config["synthetic"]
        return f"n{s['n_images']}-px{s['image_size']}-seed{s['seed']}"

    def dataset_location(self, spec: dict[str, Any]) -> str:
        """Where the raw data of a dataset spec lives (a folder, or the root for
        CIFAR/MNIST); no download happens at run time, so a folder without the files the
        dataset needs is an InputError."""
        name, config = spec["name"], self.config
        if name == "microbeads":
            if not config["microbead_dir"]:
                return f"{self.results}/datasets/microbeads-synthetic-{self.synthetic_tag()}"
            location = Path(config["microbead_dir"]).resolve()
            if missing_files(name, location):
                raise InputError(
                    f"dataset microbeads: microbead_dir={location} "
                    + ("has no density.csv" if location.is_dir() else "does not exist")
                    + "; point --config microbead_dir=PATH at a folder of images with "
                    "density.csv (columns filename,density)"
                )
            return str(location)
        key = "vgg_cells_dir" if name == "vgg_cells" else "data_root"
        if not config[key]:
            raise InputError(
                f"dataset {name} needs --config {key}=PATH (a folder holding "
                + (
                    "NNNcell.png + NNNdots.png)"
                    if name == "vgg_cells"
                    else "cifar-10-batches-py/, cifar-100-python/ or MNIST/raw/)"
                )
            )
        location = Path(config[key]).resolve()
        missing = missing_files(name, location)
        if missing:
            raise InputError(
                f"dataset {name}: {key}={location} lacks {missing[:6]}; point "
                f"--config {key}=PATH at a folder that has them (see docs/studies.md)"
            )
        return str(location)

    def dataset_key(self, spec: dict[str, Any]) -> str:
        """Prepared datasets are shared by every study with the same spec and source."""
        source = self.dataset_location(spec)
        return f"{spec['name']}-{config_hash({'spec': spec, 'source': source})}"

    def prepared_specs(self) -> dict[str, dict[str, Any]]:
        """Dataset key -> its spec, for every study of this run."""
        return {
            self.dataset_key(self.study(n).dataset): self.study(n).dataset for n in self.study_names
        }

    def raw_dataset(self, key: str) -> list[str]:
        """The generated dataset folder the prepare job reads, when no real folder is
        configured (a job makes it); nothing for data that is already there."""
        spec = self.prepared_specs()[key]
        if spec["name"] == "microbeads" and not self.config["microbead_dir"]:
            return [self.dataset_location(spec)]
        return []

    def prepared(self, study: str) -> str:
        # once per study, not once per run (hashing the spec 10,000 times showed in profiles)
        if study not in self._prepared:
            key = self.dataset_key(self.study(study).dataset)
            self._prepared[study] = f"{self.results}/prepared/{key}/prepared.pt"
        return self._prepared[study]

    def manifest(self, study: str) -> str:
        return self.prepared(study).removesuffix("prepared.pt") + "manifest.json"

    def microbead_source(self) -> Source:
        """The microbead images the workflow will prepare: a folder's (its density.csv rows;
        their size and channels are read only when preparing) or the generated set."""
        if self._source is None:
            if not self.config["microbead_dir"]:
                s = self.config["synthetic"]
                self._source = Source(s["n_images"], s["image_size"], 1)
            else:
                try:
                    with open(Path(self.config["microbead_dir"]) / "density.csv") as fh:
                        images = max(sum(1 for line in fh if line.strip()) - 1, 0)
                    self._source = Source(images)
                except OSError:  # reported, with the fix, by dataset_location
                    self._source = Source()
        return self._source

    def microbead_images(self, study: Study) -> int | None:
        """Images the study's dataset starts from (None: not a microbead study)."""
        if study.dataset["name"] != "microbeads":
            return None
        return self.microbead_source().images

    # ------------------------------------------------------------------------- train jobs

    def train_config(self, study: str, cfg: str) -> dict[str, Any]:
        """The resolved training config of one distinct configuration (without its seed)."""
        s = self.study(study)
        try:
            exps = s.configs()[cfg]
        except KeyError:
            raise ValueError(
                f"hpstudy: {cfg!r} is not a configuration of study {s.name} ({s.path}); see "
                f"{self.results}/{s.name}/experiments.tsv (column config_hash)"
            ) from None
        values = exps[0].config.to_dict()
        values.pop("seed")
        return values

    def train_output(self, study: str, cfg: str, k: int | str | None = None) -> str:
        """The output folder of a train job (of round k for a sequential study)."""
        rounds_part = f"rounds/{k}/" if k is not None else ""
        return f"{self.results}/{study}/{rounds_part}runs/{cfg}"

    def keep_dir(self, study: str, cfg: str) -> str:
        """Checkpoints and finished seeds, outside the declared outputs: Snakemake deletes a
        failed job's outputs, and a rerun must not train a finished seed again."""
        return f"{self.results}/{study}/checkpoints/{cfg}"

    def tensorboard_dir(self, study: str, cfg: str) -> str:
        """TensorBoard event folder of a configuration's runs (seed{N}/ below it), named
        after the first experiment that uses it ("" when config tensorboard is false)."""
        if not self.config["tensorboard"]:
            return ""
        first = self.study(study).configs()[cfg][0]
        return f"{self.results}/{study}/tensorboard/{first.id}"

    def calibration(self, threads: int, device_profile: str | None = None) -> Calibration:
        key = (threads, device_profile)
        if key not in self._calibrations:
            self._calibrations[key] = Calibration(threads=threads, device_profile=device_profile)
        return self._calibrations[key]

    def run_estimate(self, study: str, cfg: str) -> cost.RunEstimate:
        """Estimated cost of one run (one seed) of a configuration: on the device of the
        walltime policy's device profile, else on this machine with one thread (a local
        train job's)."""
        if (study, cfg) not in self._estimates:
            s = self.study(study)
            self._estimates[study, cfg] = cost.estimate_run(
                s.configs()[cfg][0].config,
                s.dataset,
                self.calibration(1, self.walltime.device_profile),
                self.microbead_images(s),
            )
        return self._estimates[study, cfg]

    def runtime_minutes(self, study: str, cfg: str, seeds: int, attempt: int) -> int:
        """Walltime of a train job (`seeds` runs of one configuration): their estimate x
        factor x attempt, clamped (profiles/walltime.yaml); a retry after a walltime kill
        gets more. Without an estimate (HPSTUDY_ESTIMATE=off): 120 minutes per seed x
        attempt."""
        if not self.estimate:
            return 120 * seeds * attempt
        estimate = self.run_estimate(study, cfg)
        return cost.walltime_minutes(estimate.wall_s, seeds, attempt, self.walltime)

    def start_lines(self, runtime_override: Any = None) -> list[str]:
        """The workflow's first words: one cost line per study (a sequential study's: the
        runs planned so far), and a warning when `--set-resources train:runtime=...`
        (`runtime_override`) would give a retry after a walltime kill no more time."""
        lines = []
        for name in self.study_names:
            s = self.study(name)
            lines.append(
                cost.one_line(
                    s,
                    self.calibration(1),
                    self.microbead_images(s),
                    os.cpu_count(),
                    rounds.progress(s, self.results),
                )
            )
        runtime = getattr(runtime_override, "raw", runtime_override)
        if runtime is not None and "attempt" not in str(runtime):
            lines.append(
                f"hpstudy: warning: --set-resources train:runtime={runtime} "
                "replaces the walltime from each run's estimate x attempt: a retry after a "
                "walltime kill gets no more time; write it with attempt, e.g. "
                "train:runtime='120*attempt'"
            )
        return lines

    # ------------------------------------------------------------------------- rounds

    def round_config_seeds(self, study: str, k: int) -> dict[str, int]:
        """Config id -> seeds its train job of round k runs (the most any experiment using
        it was given); a configuration absent from the dict does not train in round k."""
        s = self.study(study)
        if k == 1:
            return {cfg: s.plan.initial for cfg in s.configs()}
        decision = self.decision(study, k - 1)
        out = {}
        for cfg, exps in s.configs().items():
            now = max(decision["seeds"].get(e.id, 0) for e in exps)
            nxt = max(decision["seeds_next"].get(e.id, 0) for e in exps)
            if nxt > now:
                out[cfg] = nxt
        return out

    def last_trained(self, study: str, k: int) -> dict[str, int]:
        """Config id -> the last round <= k that trained it (its record holds all its
        seeds)."""
        out = {}
        for j in range(1, k + 1):
            out.update({cfg: j for cfg in self.round_config_seeds(study, j)})
        return out

    def final_round(self, study: str) -> int:
        """The round whose decision says the study is done."""
        k = 1
        while not self.decision(study, k)["done"]:
            k += 1
        return k

    def round_seeds(self, study: str, k: int, cfg: str) -> list[int]:
        return self.study(study).seeds[: self.round_config_seeds(study, k)[cfg]]

    def round_records(self, study: str, k: int) -> list[str]:
        return [
            f"{self.results}/{study}/rounds/{j}/records/{cfg}.json"
            for cfg, j in self.last_trained(study, k).items()
        ]

    def previous_round(self, study: str, k: int) -> list[str]:
        return [f"{self.results}/{study}/rounds/round{k - 1}.yaml"] if k > 1 else []

    def rounds_file(self, study: str) -> list[str]:
        """The last round file of a sequential study (aggregate reads its verdicts); none
        else."""
        if self.study(study).plan is None:
            return []
        return [f"{self.results}/{study}/rounds/round{self.final_round(study)}.yaml"]

    # ------------------------------------------------------------------------- aggregate

    def records(self, study: str) -> list[str]:
        """The extract records aggregate reads: each configuration's from its last round
        (sequential), else from its train job (only the finished ones with allow_partial)."""
        s = self.study(study)
        if s.plan is not None:
            return self.round_records(study, self.final_round(study))
        configs = list(s.configs())
        if self.config["allow_partial"]:  # configurations whose train job finished
            configs = [c for c in configs if Path(self.train_output(study, c)).is_dir()]
        return [f"{self.results}/{study}/records/{c}.json" for c in configs]

    def all_runs(self, study: str) -> list[str]:
        """Every run (`{experiment}/seed{N}`) aggregate expects: a sequential study's seeds
        each configuration ran by the last round."""
        s = self.study(study)
        if s.plan is None:
            return [f"{exp}/seed{seed}" for exp, seed in s.runs()]
        seeds: dict[str, int] = {}
        for j in range(1, self.final_round(study) + 1):
            seeds.update(self.round_config_seeds(study, j))
        return [f"{e.id}/seed{n}" for e in s.experiments for n in s.seeds[: seeds[e.config_id]]]

    def final_outputs(self) -> list[str]:
        outputs = []
        for name in self.study_names:
            outputs += [
                f"{self.results}/{name}/experiments.tsv",
                f"{self.reports}/{name}/report.md",
                f"{self.reports}/{name}/report.html",
            ]
        return outputs

    # ------------------------------------------------------------------------- damage

    def published_runs(self, study: str) -> dict[str, list[int] | None]:
        """The output folders of a study's finished train jobs -> the seeds each holds (None
        where a sequential study's rounds decide them)."""
        s = self.study(study)
        if s.plan is None:
            folders = {self.train_output(study, cfg): s.seeds for cfg in s.configs()}
        else:
            found = Path(f"{self.results}/{study}/rounds").glob("*/runs/*")
            folders = {str(p): None for p in found}
        return {folder: seeds for folder, seeds in folders.items() if os.path.isdir(folder)}

    def damaged(self) -> tuple[dict[str, list[str]], list[str]]:
        """Published folder -> what is wrong in it (its train job runs again), and the lines
        to say at the start: each problem, the repair, and checkpoints that cannot be read
        (their seeds train again from scratch)."""
        damage: dict[str, list[str]] = {}
        for name in self.study_names:
            for folder, seeds in self.published_runs(name).items():
                problems = integrity.damaged_seeds(folder, seeds)
                if problems:
                    damage[folder] = problems
        lines = [f"hpstudy: damaged: {p}" for problems in damage.values() for p in problems]
        if damage:
            lines.append(
                "hpstudy: repairing: the train jobs of "
                + ", ".join(damage)
                + " run again (each seed is copied again from its kept copy under "
                "checkpoints/, or trained again where that is damaged too); by hand: "
                "snakemake --forcerun " + " ".join(damage)
            )
        for name in self.study_names:
            for ckpt in sorted(Path(f"{self.results}/{name}/checkpoints").glob("*/seed*.pt")):
                problem = integrity.checkpoint_problem(ckpt)
                if problem:
                    lines.append(
                        f"hpstudy: warning: checkpoint {ckpt} is unreadable ({problem}); "
                        f"{ckpt.stem} of configuration {ckpt.parent.name} trains again from "
                        "scratch"
                    )
        return damage, lines
