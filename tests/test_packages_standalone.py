"""Each package installs alone in a fresh venv and passes its own tests there.

`pip install -e packages/<name>[test]` must pull only that package, its declared dependencies and
the shared `fulcrum-core` (a path dependency), never a sibling package; torch stays on the CPU
build through constraints.txt.
"""

import os
import subprocess
import venv

import pytest
from wfhelpers import REPO

pytestmark = pytest.mark.slow

PACKAGES = ["optim_theory", "seesaw_train", "serving", "diffusion"]
DISTS = {f"fulcrum-{p.replace('_', '-')}" for p in PACKAGES}


@pytest.mark.parametrize("package", PACKAGES)
def test_package_installs_and_tests_alone(package, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    install = subprocess.run(
        [
            py,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-c",
            str(REPO / "constraints.txt"),
            "-e",
            f"{REPO / 'packages' / package}[test]",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    listed = subprocess.run([py, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, env=env)
    installed = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert "fulcrum-core" in installed
    own = f"fulcrum-{package.replace('_', '-')}"
    assert installed & DISTS == {own}, installed & DISTS
    tests = subprocess.run(
        [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"packages/{package}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout
