"""What the distributions declare and carry (issue 18): the license, the classifiers, the entry points, and an sdist
that holds what its own tests read. `.ci/run` builds both distributions, checks LICENSE in each, and runs the
unpacked sdist's suite; this checks the declarations those builds read."""

import re
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_is_declared_and_shipped() -> None:
    project = PROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    # setuptools reads the SPDX string and license-files from 77 on (68 fails on them)
    assert PROJECT["build-system"]["requires"] == ["setuptools>=77"]


def test_the_classifiers() -> None:
    classifiers = set(PROJECT["project"]["classifiers"])
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in (11, 12, 13)} <= classifiers
    assert {"Framework :: Pytest", "Framework :: Hypothesis"} <= classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)


def test_the_sdist_carries_what_its_tests_read() -> None:
    manifest = (ROOT / "MANIFEST.in").read_text()
    grafted = set(re.findall(r"^graft (\S+)$", manifest, re.M))
    included = set(re.findall(r"^include (.+)$", manifest, re.M)[0].split())
    assert {"tests", "docs", "examples", "benchmarks", "workstate"} <= grafted
    assert {"LICENSE", "README.md", ".ci/run"} <= included
    read = set()
    for path in (ROOT / "tests").rglob("*.py"):
        if path != Path(__file__).resolve():  # this file's pattern is no file it reads
            for chain in re.findall(r'ROOT((?: / "[^"]+")+)', path.read_text()):
                read.add("/".join(re.findall(r'"([^"]+)"', chain)))
    assert read, "the tests name the files they read as ROOT / ..."
    for top in sorted(read):
        always = {"pyproject.toml", "MANIFEST.in"}  # setuptools puts both in every sdist
        assert top in included | always or top.split("/")[0] in grafted, f"the sdist lacks {top}"


def test_the_entry_points_are_installed() -> None:
    assert {ep.name: ep.value for ep in entry_points(group="pytest11")}.get("workstate") == "workstate.testing.plugin"
    hooks = {ep.value for ep in entry_points(group="hypothesis")}
    assert "workstate.testing.hypothesis_hook:_hypothesis_setup_hook" in hooks
