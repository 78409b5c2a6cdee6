"""Acceptance test of fastact.special: SciPy's own test files for softmax,
log_softmax, logsumexp, expit, logit and log_expit, run straight from the
installed scipy package with those six functions replaced by fastact's (see
scipy_plugin.py).  Every test of those files must pass."""

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("scipy")

HERE = os.path.dirname(os.path.abspath(__file__))
SUITES = ["scipy.special.tests.test_logsumexp", "scipy.special.tests.test_logit"]


@pytest.mark.parametrize("backend_name", ["default", "numpy"])
def test_scipy_own_tests_pass_against_fastact_special(tmp_path, backend_name):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE] + [p for p in sys.path if p])
    if backend_name != "default":
        env["FASTACT_BACKEND"] = backend_name
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "scipy_plugin", "-p", "no:cacheprovider",
         "-q", "--pyargs", *SUITES],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    m = re.search(r"(\d+) passed", proc.stdout)
    assert m and int(m.group(1)) >= 400, tail
    assert not re.search(r"\d+ (failed|error|errors|xfailed|skipped)", proc.stdout), tail
