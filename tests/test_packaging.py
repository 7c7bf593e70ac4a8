"""What a user installs is a wheel: it must hold every module of the package.

A plugin whose wheel lacks a subpackage stops every pytest run in the environment it is
installed in, while an editable install (what development uses) hides the gap. So the wheel is
built here, from this checkout, and its contents compared with the source tree.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pytest_deproxy"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed here, so the wheel cannot be built offline")
    out = tmp_path_factory.mktemp("wheel")
    # Built from a clean copy: setuptools reuses a build/ directory left in a checkout, and a
    # stale one would hide a module the configuration leaves out.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=source,
        check=False,
    )
    assert result.returncode == 0, f"building the wheel failed:\n{result.stdout}\n{result.stderr}"
    [built] = out.glob("pytest_deproxy-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_every_module_of_the_package(wheel: zipfile.ZipFile) -> None:
    in_source = {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix in (".py", ".typed") and "__pycache__" not in path.parts
    }
    in_wheel = {name for name in wheel.namelist() if name.startswith("pytest_deproxy/")}

    assert in_source - in_wheel == set(), "modules missing from the wheel"
    assert "pytest_deproxy/mitm/proxy.py" in in_wheel


def test_the_wheel_registers_the_plugin_and_the_command(wheel: zipfile.ZipFile) -> None:
    [entry_points] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()

    assert "[pytest11]\ndeproxy = pytest_deproxy.plugin" in text
    assert "[console_scripts]\ndeproxy = pytest_deproxy.cli:main" in text


def test_the_wheel_holds_the_shipped_proxy_configs(wheel: zipfile.ZipFile) -> None:
    # `deproxy conformance --proxy NAME` reads them from the installed package: a config left
    # out of the wheel is a proxy that cannot be started by anyone who installed it.
    configs = PACKAGE / "conformance" / "configs"
    in_source = {path.relative_to(ROOT).as_posix() for path in configs.iterdir() if path.is_file()}
    in_wheel = set(wheel.namelist())

    assert {"pytest_deproxy/conformance/configs/nginx.conf"} <= in_source
    assert in_source - in_wheel == set(), "proxy configs missing from the wheel"
