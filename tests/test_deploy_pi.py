"""deploy/raspberry-pi scripts: syntax, refusals and the plan install.sh prints (--dry-run)."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PI = REPO / "deploy" / "raspberry-pi"


def sh(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    return subprocess.run(["bash", *args], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


@pytest.mark.parametrize("script", ["install.sh", "check-wheels.sh", "emulated-smoke.sh"])
def test_scripts_are_executable_bash(script):
    path = PI / script
    assert os.access(path, os.X_OK)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


@pytest.mark.skipif(platform.machine() == "aarch64", reason="checks the refusal on a non-ARM machine")
def test_install_refuses_a_machine_that_is_not_a_64_bit_pi(tmp_path):
    proc = sh(str(PI / "install.sh"), "--dry-run", home=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a 64-bit Raspberry Pi" in lines[0]


@pytest.mark.skipif(not shutil.which("dpkg"), reason="install.sh is for Debian-family systems")
def test_install_dry_run_plans_runtime_wheels_and_autostart(tmp_path):
    proc = sh(str(PI / "install.sh"), "--any-os", "--no-apt", "--dry-run", "--venv", str(tmp_path / "venv"),
              "--autostart", "--source", "0", home=tmp_path)
    if "untested OS release" in proc.stderr or "unsupported OS" in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"-m venv --system-site-packages {tmp_path / 'venv'}" in out
    pip = next(line for line in out.splitlines() if "pip install" in line)
    assert "--only-binary=:all:" in pip and "onnxruntime" in pip and "PySide6-Essentials" in pip
    assert "torch" not in pip
    assert "--profile pi --kiosk --source \"0\"" in out
    assert not (tmp_path / ".config" / "autostart").exists()  # a dry run writes nothing
    assert not (tmp_path / "venv").exists()


def test_constraints_keep_pyside_below_6_8_and_skip_the_broken_onnxruntime():
    text = (PI / "constraints-bookworm.txt").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert lines == ["PySide6-Essentials<6.8", "onnxruntime!=1.21.0"]
