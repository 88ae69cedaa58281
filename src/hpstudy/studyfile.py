"""Reading study files: the YAML, the JSON schemas, and messages a user can act on.

Everything here looks at one value at a time: `load_yaml` reads a file as YAML 1.2 (`1e-3`
a number, `off` a name) and refuses a repeated key or a tab in the indentation by line,
`validate` checks a mapping against workflow/schemas/*.schema.yaml and turns every error into
a line naming the file, the key path, the value and what is allowed, with a "did you mean"
for a near miss (`StudyError`), `choices` keeps a list of names short, `parse_seeds_override`
reads `--config seeds=...` as the study file would hold it, and `missing_study` says which
studies exist when a name is wrong. Checks that relate several keys or need the expanded
experiments: hpstudy.study_checks.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from pathlib import Path
from typing import Any

import yaml

from hpstudy import paths
from hpstudy.config import did_you_mean

SHIPPED_DIR = paths.shipped_studies()


class StudyError(ValueError):
    """A study file is invalid; the message names the file, the key path and the fix."""


# -- YAML as people write it ----------------------------------------------------------------
# PyYAML reads YAML 1.1: `1e-3` is a string, `off`/`no`/`yes`/`on` are booleans, `012` is
# octal and a repeated key silently replaces the first. Study files are read with the YAML
# 1.2 core schema instead (numbers as written, only true/false are booleans) and a repeated
# key is an error naming both lines.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when present: the
# pure-Python one took most of a 10,000-experiment dry run
_CORE_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp", "value")}
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: yaml.Node, again: yaml.Node, mapping: yaml.Node):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.first, self.again, self.mapping = key, first, again, mapping


class StudyLoader(_Base):
    """SafeLoader with the YAML 1.2 core schema's scalars and no repeated keys."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _CORE_TAGS]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the constructor says so below
                    continue
                if first is not key_node:
                    raise DuplicateKey(key, first, key_node, node)
        return super().construct_mapping(node, deep=deep)


def _core_int(loader: StudyLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if digits.startswith(("0o", "0x")):
        return sign * int(digits[2:], 8 if digits[1] == "o" else 16)
    return sign * int(digits, 10)  # 012 is twelve (YAML 1.1 read it as octal ten)


StudyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
StudyLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
StudyLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+.0123456789"))
StudyLoader.add_constructor("tag:yaml.org,2002:int", _core_int)


def parse_yaml(text: str) -> Any:
    """A YAML string (a `--config` value) read as a study file is read."""
    return yaml.load(text, Loader=StudyLoader)


def load_yaml(path: Path) -> Any:
    """A study file (or schema): YAML 1.2 numbers and booleans, repeated keys refused, and
    every problem a StudyError naming the file, the line and the fix."""
    try:
        with open(path) as fh:
            loader = StudyLoader(fh)
            try:
                root = loader.get_single_node()
                return None if root is None else loader.construct_document(root)
            except DuplicateKey as err:
                raise StudyError(_duplicate_message(path, root, err)) from None
            finally:
                loader.dispose()
    except FileNotFoundError:
        raise StudyError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: not valid YAML: {_yaml_problem(path, err)}") from None


def _yaml_problem(path: Path, err: yaml.YAMLError) -> str:
    """The parser's message, or what a tab in the indentation means in words."""
    mark = getattr(err, "problem_mark", None)
    last = mark.line + 1 if mark is not None else None
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for number, line in enumerate(lines[:last], start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            return (
                f"line {number}: a tab in the indentation ({line.strip()[:40]!r}); YAML "
                "indents with spaces only: indent with spaces"
            )
    return str(err)


def _key_path_to(root: yaml.Node, target: yaml.Node) -> tuple:
    """Where the mapping `target` sits in the document: ("groups", "g", "list", 0)."""
    stack: list[tuple[yaml.Node, tuple]] = [(root, ())]
    while stack:
        node, where = stack.pop()
        if node is target:
            return where
        if isinstance(node, yaml.MappingNode):
            stack += [(v, (*where, k.value)) for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(v, (*where, i)) for i, v in enumerate(node.value)]
    return ()


def _duplicate_message(path: Path, root: yaml.Node, err: DuplicateKey) -> str:
    where = _key_path_to(root, err.mapping)
    lines = f"lines {err.first.start_mark.line + 1} and {err.again.start_mark.line + 1}"
    if where == ("groups",):
        return (
            f"{path}: groups.{err.key}: two groups are named {err.key!r} ({lines}); the "
            "second would silently replace the first: give each group its own name"
        )
    return (
        f"{path}: {_key_path((*where, err.key))}: the key {err.key!r} appears twice ({lines}); "
        "YAML would silently keep only the last value: keep one"
    )


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
    if "$ref" in schema and "type" not in schema:
        return _allowed(_resolve(schema["$ref"]))
    if ("oneOf" in schema or "anyOf" in schema) and "type" not in schema:
        return " or ".join(_allowed(s) for s in schema.get("oneOf", schema.get("anyOf")))
    if schema.get("type") == "object" and schema.get("required"):
        optional = [k for k in schema.get("properties", {}) if k not in schema["required"]]
        return f"a mapping with keys {', '.join(schema['required'])}" + (
            f" (optional: {', '.join(optional)})" if optional else ""
        )
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
    if kinds == ["array"] and isinstance(schema.get("items"), dict) and schema["items"]:
        item = _allowed(schema["items"])
        text = f"a list of {item.removeprefix('an ').removeprefix('a ')}"
        text = text.replace("integer ", "integers ", 1).replace("number ", "numbers ", 1)
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


def _resolve(ref: str) -> dict[str, Any]:
    """The schema a `$ref` names (another schema file, as the study schema refers to them)."""
    name, _, pointer = ref.partition("#")
    schema = load_yaml(paths.schema(name)) if name else {}
    for part in filter(None, pointer.split("/")):
        schema = schema.get(part, {})
    return schema if isinstance(schema, dict) else {}


# What people write for "nothing" where a name is expected (scheduler: off, mix: no)
_NOTHING = {"off", "no", "false", "null", "nil", "disabled", "disable", "0", "None"}


def did_you_mean_value(value: Any, allowed: list) -> str:
    """'; did you mean `cosine`?' for a misspelt value close to an allowed one (difflib, case
    ignored); `off`, `no`, false or null where `none` is allowed suggest `none`."""
    names = [a for a in allowed if isinstance(a, str)]
    if "none" in names and (value is None or value is False or str(value) in _NOTHING):
        return "; did you mean `none`?"
    if not isinstance(value, str) or not names:
        return ""
    lower = {name.lower(): name for name in names}
    close = difflib.get_close_matches(value.lower(), list(lower), n=1, cutoff=0.6)
    return f"; did you mean `{lower[close[0]]}`?" if close else ""


def choices(value: Any, names: list[str], limit: int = 20) -> str:
    """A list of names to choose from that stays short: all of them up to `limit`, else the
    ones closest to `value` then the first others, and how many there are in all."""
    hint = did_you_mean_value(value, names)
    if len(names) <= limit:
        return f"{names}{hint}"
    close = difflib.get_close_matches(str(value), names, n=limit, cutoff=0.5)
    shown = list(dict.fromkeys([*close, *names[:limit]]))[:limit]
    order = "the closest first" if close else "the first"
    return f"{shown} ({limit} of {len(names):,} shown, {order}){hint}"


def shown(value: Any, limit: int = 120) -> str:
    """A value as the message quotes it: its repr, cut at `limit` characters (a wrongly
    shaped group can hold thousands of values), with its size when cut."""
    text = repr(value)
    if len(text) <= limit:
        return text
    n = len(value) if isinstance(value, list | dict) else 0
    size = f", {n:,} item{'s' if n != 1 else ''}" if n else ""
    return f"{text[:limit]}... ({len(text):,} characters{size})"


def _explain(err) -> str:
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        return f"unknown key(s) {extra}{did_you_mean(extra, allowed)}; allowed: {allowed}"
    if err.validator == "enum":
        hint = did_you_mean_value(err.instance, err.validator_value)
        return f"{shown(err.instance)} is not allowed; choose one of {err.validator_value}{hint}"
    if err.validator == "oneOf" and "grid" in json.dumps(err.validator_value):
        return "a group needs exactly one of `grid` (dict of value lists) or `list` (overrides)"
    if err.validator in ("minProperties", "minItems") and not err.instance:
        return "is empty; give at least one entry"
    if err.validator == "required":
        missing = ", ".join(repr(k) for k in err.validator_value if k not in (err.instance or {}))
        return f"{missing} is a required property; expected {_allowed(schema)}"
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
        hint = ""
        if schema.get("type") == "boolean" and isinstance(err.instance, str):
            if err.instance.lower() in ("on", "yes", "off", "no", "y", "n"):
                yes = err.instance.lower() in ("on", "yes", "y")
                hint = f"; write {'true' if yes else 'false'} (YAML 1.2: only true/false)"
        if schema.get("type") == "object" and isinstance(err.instance, list):
            hint = "; write `key: value` lines under it, not a list of `- ` items"
            names = [x.get("name") for x in err.instance if isinstance(x, dict)]
            if names and all(isinstance(n, str) for n in names):  # `- name: g` group items
                hint = f"; write each item as `{names[0]}:` with its keys indented below it"
        return f"{shown(err.instance)} is not allowed; expected {_allowed(schema)}{hint}"
    return err.message


SEEDS_EXAMPLE = "seeds='{initial: 3, max: 10, step: 2}'"
SEEDS_EXAMPLES = (
    f"--config seeds=5 (fixed), seeds='[0, 1, 2]' (these seeds) or {SEEDS_EXAMPLE} (sequential)"
)


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
            value = parse_yaml(value)
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
            return parse_yaml(value)
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
