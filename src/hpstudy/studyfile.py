"""Reading study files: the YAML, the JSON schemas, and messages a user can act on.

Everything here looks at one value at a time: `load_yaml` reads a file, `validate` checks a
mapping against workflow/schemas/*.schema.yaml and turns every error into a line naming the
file, the key path, the value and what is allowed (`StudyError`), `parse_seeds_override`
reads `--config seeds=...` as the study file would hold it, and `missing_study` says which
studies exist when a name is wrong. Checks that relate several keys or need the expanded
experiments: hpstudy.study_checks.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml

from hpstudy import paths
from hpstudy.config import did_you_mean

SHIPPED_DIR = paths.shipped_studies()


class StudyError(ValueError):
    """A study file is invalid; the message names the file, the key path and the fix."""


def load_yaml(path: Path) -> Any:
    try:
        with open(path) as fh:
            # libyaml's parser when present: the pure-Python one took most of a
            # 10,000-experiment dry run
            return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise StudyError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: not valid YAML: {err}") from None


def _registry():
    from referencing import Registry, Resource

    resources = []
    for schema_file in paths.schemas().glob("*.schema.yaml"):
        resources.append((schema_file.name, Resource.from_contents(load_yaml(schema_file))))
    return Registry().with_resources(resources)


@functools.cache
def _validator(schema_name: str):
    """Built once per process: a 10,000-experiment study validates 10,000 overrides."""
    import jsonschema

    schema = load_yaml(paths.schema(schema_name))
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def validate(data: Any, schema_name: str, where: str, prefix: tuple = ()) -> None:
    """Validate against workflow/schemas/<schema_name>; every error names its key path
    (`prefix` is where `data` sits in the file, e.g. ("groups", "g", "list", 0))."""
    validator = _validator(schema_name)
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    # a failed oneOf/anyOf also reports its branches; the branch errors say it better
    errors = [
        e
        for e in errors
        if not (
            e.validator == "oneOf" and e.context and "grid" not in json.dumps(e.validator_value)
        )
    ] or errors
    if errors:
        lines = [f"{where}: {len(errors)} error(s):"]
        for err in errors:
            lines.append(f"  - {_key_path((*prefix, *err.absolute_path))}: {_explain(err)}")
        raise StudyError("\n".join(lines))


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _allowed(schema: dict[str, Any]) -> str:
    """What a schema allows, in words: 'an integer >= 1', 'a number > 0 and <= 10', ..."""
    if "enum" in schema:
        return f"one of {schema['enum']}"
    if ("oneOf" in schema or "anyOf" in schema) and "type" not in schema:
        return " or ".join(_allowed(s) for s in schema.get("oneOf", schema.get("anyOf")))
    kinds = schema.get("type", "a name" if "pattern" in schema else "a value")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "boolean": "true or false",
        "null": "null",
        "array": "a list",
        "object": "a mapping",
    }
    text = " or ".join(words.get(k, k) for k in kinds)
    bounds = [
        f"{op} {schema[key]}"
        for key, op in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        )
        if key in schema
    ]
    if bounds:
        text += " " + " and ".join(bounds)
    if "minItems" in schema:
        text += f" with at least {schema['minItems']} item(s)"
    if schema.get("uniqueItems"):
        text += " without repeats"
    if "pattern" in schema:
        text += f" matching {schema['pattern']}"
    return text


def _explain(err) -> str:
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        return f"unknown key(s) {extra}{did_you_mean(extra, allowed)}; allowed: {allowed}"
    if err.validator == "enum":
        return f"{err.instance!r} is not allowed; choose one of {err.validator_value}"
    if err.validator == "oneOf" and "grid" in json.dumps(err.validator_value):
        return "a group needs exactly one of `grid` (dict of value lists) or `list` (overrides)"
    if err.validator in ("minProperties", "minItems") and not err.instance:
        return "is empty; give at least one entry"
    if err.validator in (
        "type",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "oneOf",
        "anyOf",
        "pattern",
        "uniqueItems",
        "minItems",
    ):
        return f"{err.instance!r} is not allowed; expected {_allowed(schema)}"
    return err.message


SEEDS_EXAMPLE = "seeds='{initial: 3, max: 10, step: 2}'"


def parse_seeds_override(value: Any) -> Any:
    """The `seeds` override of the workflow (`--config seeds=...`) as the study file's
    `seeds` would hold it; None when not given. Snakemake hands a nested value over as a
    string, or as a mapping of strings (it parses `--config` with YAML's BaseLoader):
    both are parsed with YAML here, so `{initial: 3, max: 10}`, `5` and `[0, 1, 2]` read
    as they would in a study file."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise StudyError(
                f"--config seeds={value!r}: not valid YAML ({str(err).splitlines()[0]}); "
                f"write it as {SEEDS_EXAMPLE} (sequential) or seeds=5 (fixed)"
            ) from None
        return parse_seeds_override(value) if isinstance(value, dict | list) else value
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return parse_seeds_override(value)


def flow(value: Any) -> str:
    """A value as one line of YAML flow style ({initial: 3, max: 10})."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000)
    return text.strip().removesuffix("...").strip()


def shipped_studies(studies_dir: str | Path = SHIPPED_DIR) -> list[str]:
    """Names of the study files in a folder (config/studies by default)."""
    return sorted(p.stem for p in Path(studies_dir).glob("*.yaml"))


def missing_study(path: str | Path) -> str:
    """Why a study file is missing, with the studies that exist and the nearest name."""
    path = Path(path)
    folder = path.parent if path.parent.is_dir() else SHIPPED_DIR
    names = shipped_studies(folder)
    where = (
        "shipped studies" if folder.resolve() == SHIPPED_DIR.resolve() else f"studies in {folder}"
    )
    hint = did_you_mean([path.stem], names).removeprefix("; ")
    return f"{path}: no such study file; {where}: {', '.join(names) or 'none'}" + (
        f"; {hint}" if hint else ""
    )
