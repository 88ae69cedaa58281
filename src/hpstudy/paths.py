"""Where the package finds the files it shares with the workflow: the JSON schemas and the
report templates. The one place that knows the layout.

A wheel carries them inside the package (`hpstudy/schemas`, `hpstudy/templates`: see
`[tool.hatch.build.targets.wheel.force-include]` in pyproject.toml); a source checkout
(`uv sync` installs it editable) has them under `workflow/`, where Snakemake reads them too.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def _shared(name: str) -> Path:
    packaged = _PACKAGE / name
    if packaged.is_dir():
        return packaged
    checkout = _PACKAGE.parent.parent / "workflow" / name  # src/hpstudy -> repository root
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"hpstudy: no {name}/ folder in {_PACKAGE} or {checkout.parent}")


def schemas() -> Path:
    """The folder of the JSON schemas (`*.schema.yaml`)."""
    return _shared("schemas")


def templates() -> Path:
    """The folder of the report templates (`*.j2`)."""
    return _shared("templates")


def template(name: str):
    """A report template (`report.md.j2`, `analyze.md.j2`, ...), loaded with the settings every
    template here is written for: undefined names are errors, block tags leave no blank lines."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates()),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(name)


def schema(name: str) -> Path:
    return schemas() / name


def shipped_studies() -> Path:
    """The folder of the shipped study files (`config/studies/` of the checkout)."""
    return _PACKAGE.parent.parent / "config" / "studies"
