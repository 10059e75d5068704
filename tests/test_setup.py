"""A new user's set-up: README's two commands are what CI runs, and nothing writes into the package."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO, run_softmax


def readme_setup_commands(text: str) -> list[str]:
    """The command lines of README's set-up block: the first ```bash block after the heading
    that starts with "## Set-up", without comments and blank lines."""
    section = text.split("\n## Set-up", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def ci_commands(text: str) -> list[str]:
    """The lines of ``.ci/run`` that follow its ``# ci: command N`` markers, in order."""
    lines = text.splitlines()
    return [lines[i + 1] for i, line in enumerate(lines) if re.fullmatch(r"# ci: command \d+", line)]


def test_ci_runs_readme_setup_commands_literally_and_in_order():
    readme = readme_setup_commands((REPO / "README.md").read_text())
    ci = ci_commands((REPO / ".ci" / "run").read_text())
    assert len(readme) == 2, readme
    assert readme[0].endswith("softmax train configs/digits.yaml") and readme[1].endswith("pytest")
    assert ci == readme


def test_the_drift_check_itself_sees_a_change():
    readme = (REPO / "README.md").read_text()
    changed = readme.replace("pip install -e \".[test]\"", "pip install -e \".[tests]\"")
    assert readme_setup_commands(changed) != ci_commands((REPO / ".ci" / "run").read_text())


def test_ci_script_refuses_a_readme_that_drifted(tmp_path):
    """.ci/run checks its commands against README before it installs anything."""
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci" / "run").write_text((REPO / ".ci" / "run").read_text())
    readme = (REPO / "README.md").read_text().replace("&& pytest", "&& pytest -x")
    (tmp_path / "README.md").write_text(readme)
    proc = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith(".ci/run: command 2 is not in README.md as written"), proc.stderr


def test_compiled_kernels_are_cached_outside_the_package(tmp_path):
    """numba's cache goes to $SOFTMAX_CACHE_DIR/numba (the user cache directory when unset),
    never into the package's __pycache__, which outlives a reinstall and shadows it."""
    import softmax_cli

    package = Path(softmax_cli.__file__).parent
    before = {p for p in package.rglob("*") if p.suffix in (".nbi", ".nbc")}
    cache = tmp_path / "cache"
    env = {**os.environ, "SOFTMAX_CACHE_DIR": str(cache)}
    env.pop("NUMBA_CACHE_DIR", None)
    code = ("from softmax_cli.nn import kernels; import numpy as np;"
            "kernels.dropout_mask(np.zeros(4, np.float32), np.float32(0.5), np.float32(2.0));"
            "import numba; print(numba.config.CACHE_DIR)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(cache / "numba")
    assert any(p.suffix == ".nbi" for p in (cache / "numba").rglob("*"))
    assert {p for p in package.rglob("*") if p.suffix in (".nbi", ".nbc")} == before


def test_a_user_set_numba_cache_dir_is_kept(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "mine"), "SOFTMAX_CACHE_DIR": str(tmp_path / "ours")}
    code = "import softmax_cli.optim, numba; print(numba.config.CACHE_DIR)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "mine")


def test_an_unusable_cache_directory_falls_back_and_kernels_still_compile(tmp_path):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache directory would be")
    env = {**os.environ, "SOFTMAX_CACHE_DIR": str(blocked)}
    env.pop("NUMBA_CACHE_DIR", None)
    code = ("import softmax_cli.optim as o, numba, numpy as np;"
            "p = np.ones(3, np.float32); o.SGD([p], lr=0.5).step([np.ones(3, np.float32)]);"
            "print(numba.config.CACHE_DIR, p[0])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    cache, value = proc.stdout.split()
    assert not cache.startswith(str(blocked)) and cache.endswith(f"softmax-numba-{os.getuid()}")
    assert float(value) == 0.5
