"""The Apptainer image (containers/) installs exactly what uv.lock locks.

No Apptainer runtime exists here, so these tests check the inputs of `apptainer build`:
containers/requirements.txt must equal a fresh `uv export` of uv.lock, and hpstudy.def must
install that file (and nothing of the project's own code).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "containers" / "requirements.txt"
DEF_FILE = REPO / "containers" / "hpstudy.def"
LOCK = REPO / "uv.lock"
EXPORT = [
    "uv", "export", "--frozen", "--format", "requirements.txt",
    "--no-hashes", "--no-dev", "--no-emit-workspace",
]  # fmt: skip
REGENERATE = shlex.join([*EXPORT, "--output-file", "containers/requirements.txt"])


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of a requirements file: no comments, no blank lines."""
    lines = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def pins(text: str) -> dict[str, Version]:
    out = {}
    for line in requirement_lines(text):
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"unpinned requirement {line!r}"
        out[canonicalize_name(req.name)] = Version(spec.version)
    return out


def lock_packages() -> dict[str, dict]:
    lock = tomllib.loads(LOCK.read_text())
    return {canonicalize_name(p["name"]): p for p in lock["package"]}


def def_sections(text: str) -> dict[str, list[str]]:
    """Sections of an Apptainer definition file by name (`header` before the first %)."""
    sections: dict[str, list[str]] = {"header": []}
    current = "header"
    for line in text.splitlines():
        m = re.match(r"^%(\w+)", line)
        if m:
            current = m.group(1)
            sections.setdefault(current, [])
            continue
        sections[current].append(line)
    return sections


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH")
def test_requirements_equal_a_fresh_export_of_the_lock():
    res = subprocess.run(EXPORT, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    fresh = requirement_lines(res.stdout)
    current = requirement_lines(REQUIREMENTS.read_text())
    missing = sorted(set(fresh) - set(current))
    stale = sorted(set(current) - set(fresh))
    assert not missing and not stale, (
        "containers/requirements.txt disagrees with uv.lock; regenerate it with\n"
        f"  {REGENERATE}\nmissing: {missing}\nstale: {stale}"
    )


def test_requirement_pins_are_the_locked_versions():
    """Without uv: every pin is the locked version; the runtime deps are all there."""
    locked = lock_packages()
    required = pins(REQUIREMENTS.read_text())
    for name, version in required.items():
        assert name in locked, f"{name} is in requirements.txt but not in uv.lock"
        assert Version(locked[name]["version"]) == version, (
            f"{name}: requirements.txt pins {version}, uv.lock has {locked[name]['version']}; "
            f"regenerate with: {REGENERATE}"
        )
    project = locked["hpstudy"]
    # workspace members (the PBS executor plugin) run on the submit host, not in the image
    members = {
        n for n, p in locked.items() if "editable" in p["source"] or "virtual" in p["source"]
    }
    for dep in project["dependencies"]:
        name = canonicalize_name(dep["name"])
        assert name in required or name in members, f"{dep['name']} missing"
    assert not members & required.keys(), "workspace members must stay out of the image"
    dev = {canonicalize_name(d["name"]) for d in project.get("dev-dependencies", {}).get("dev", [])}
    assert dev and not dev & required.keys(), "dev tools must stay out of the image"
    assert "hpstudy" not in required, "the project itself must not be baked into the image"
    assert "torch" in required and "nvidia-cuda-runtime" in required


def test_def_file_installs_the_requirements_and_no_project_code():
    sections = def_sections(DEF_FILE.read_text())
    header = "\n".join(sections["header"])
    assert re.search(r"^Bootstrap:\s*docker$", header, re.M)
    assert re.search(r"^From:\s*\{\{\s*BASE_IMAGE\s*\}\}$", header, re.M)

    copies = [line.split() for line in sections.get("files", []) if line.strip()]
    sources = {src: dst for src, dst in copies}
    assert set(sources) == {"containers/requirements.txt"}, (
        f"%files must copy only the requirements file, not project code: {sorted(sources)}"
    )
    dest = sources["containers/requirements.txt"]

    post = "\n".join(sections["post"]).replace("\\\n", " ")
    installs = [line for line in post.splitlines() if re.search(r"\bpip install\b", line)]
    assert len(installs) == 1, f"expected one pip install in %post, got {installs}"
    words = installs[0].split()
    assert "--no-deps" in words, "install exactly the locked set (--no-deps)"
    flag = "--requirement" if "--requirement" in words else "-r"
    assert words[words.index(flag) + 1] == dest
    assert "pip check" in post


def test_def_arguments_match_the_project():
    args = dict(
        line.strip().split("=", 1)
        for line in def_sections(DEF_FILE.read_text())["arguments"]
        if line.strip()
    )
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    assert Version(args["PYTHON_VERSION"]) in requires

    # the base image's CUDA release is the one of the locked CUDA runtime wheels
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-base-\S+", args["BASE_IMAGE"])
    assert m, args["BASE_IMAGE"]
    cudart = Version(lock_packages()["nvidia-cuda-runtime"]["version"])
    assert (int(m.group(1)), int(m.group(2))) == (cudart.major, cudart.minor)
