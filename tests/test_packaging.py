"""What a fresh install shows: the version on both CLIs, typing markers, the licence."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import swarm

VERSION = importlib.metadata.version("queenswarm")


@pytest.mark.parametrize("module", ["swarm.queen", "swarm.agent"])
def test_version_flag_prints_the_installed_version(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", module, "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"queenswarm {VERSION}"


def test_package_version_is_the_distribution_version() -> None:
    assert swarm.__version__ == VERSION


@pytest.mark.parametrize("package", ["swarm", "agents", "memory", "discovery"])
def test_every_package_ships_py_typed(package: str) -> None:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    assert (Path(next(iter(spec.submodule_search_locations))) / "py.typed").is_file()


def test_licence_is_an_spdx_expression() -> None:
    meta = importlib.metadata.metadata("queenswarm")
    assert meta["License-Expression"] == "MIT"
