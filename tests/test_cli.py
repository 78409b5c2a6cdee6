"""``python -m fastact`` and its subcommands run and report what they claim."""

import io
import json
import os
import subprocess
import sys

import pytest

import fastact


def _run(*args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k != "FASTACT_BACKEND"}
    return subprocess.run([sys.executable, "-m", "fastact", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_check_reports_backends_and_passes():
    p = _run("check")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"fastact {fastact.__version__}" in p.stdout
    for name, why in fastact.backend_status().items():
        line = next(ln for ln in p.stdout.splitlines() if ln.strip().startswith(name + " "))
        assert (line.split()[1] == "available") == (why is None), line
    for b in fastact.backends():
        assert any(ln.strip().startswith(f"{b} ") and "OK:" in ln for ln in p.stdout.splitlines())


def test_bench_json(tmp_path):
    out = tmp_path / "b.json"
    p = _run("bench", "--kernels", "softmax,sigmoid_backward", "--shapes", "64x10,32x33",
             "--dtypes", "float32", "--quick", "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads(out.read_text())
    assert len(data["results"]) == 4
    r = data["results"][0]
    assert r["kernel"] == "softmax" and r["shape"] == [64, 10]
    assert {f"fastact-{b}" for b in fastact.backends()} <= set(r["times"])
    assert "copy" in r["times"] and all(t > 0 for t in r["times"].values())
    assert "vs numpy" in p.stdout and "speed goals" in p.stdout


def test_bench_axis(tmp_path):
    out = tmp_path / "b.json"
    p = _run("bench", "--kernels", "logsumexp", "--shapes", "6x5x3", "--axis", "1",
             "--dtypes", "float64", "--quick", "--peers", "numpy", "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    (r,) = json.loads(out.read_text())["results"]
    assert r["axis"] == 1 and r["shape"] == [6, 5, 3] and "numpy" in r["times"]
    assert "6x5x3/1" in p.stdout


def test_goals_from_records():
    from fastact import _bench

    def rec(kernel, shape, threads, cy, nu, torch, copy=1.0, scipy=None):
        t = {"fastact-cython": cy, "fastact-numba": nu, "torch": torch, "copy": copy}
        if scipy:
            t["scipy"] = scipy
        return {"kernel": kernel, "shape": list(shape), "dtype": "float32", "threads": threads, "times": t}

    recs = [rec("softmax", (4096, 1024), 1, 2.0, 4.0, 5.0, copy=1.0, scipy=40.0),
            rec("gelu", (4096, 1024), 1, 8.0, 4.0, 2.0),
            rec("softmax", (4096, 1024), 2, 1.0, 2.5, 2.5, copy=1.0, scipy=40.0),
            rec("gelu", (4096, 1024), 2, 4.0, 2.0, 1.0)]
    g = _bench.goals(recs)
    assert set(g) == {"cython", "numba", "best"}
    c1, b2 = g["cython"][1], g["best"][2]
    assert c1["torch_geomean"] == pytest.approx((2.5 * 0.25) ** 0.5)
    assert c1["below_torch"] == [(0.25, "gelu", "4096x1024", "float32")]
    assert c1["scipy_geomean"] == pytest.approx(20.0) and c1["softmax_f32_x_copy"] == pytest.approx(2.0)
    assert c1["scipy_copy_geomean"] == pytest.approx(40.0) and c1["scipy_under_10_copies"] == (0, 1)
    assert "scaling_median" not in c1
    assert b2["scaling_median"] == pytest.approx(2.0) and b2["scaling_ge_1.8"] == (2, 2)
    assert g["numba"][2]["softmax_f32_x_copy"] == pytest.approx(2.5)
    # the printed report names SciPy only where SciPy ran (not for gelu alone)
    buf = io.StringIO()
    _bench.format_goals(recs, out=buf)
    assert "vs scipy geomean 20.00" in buf.getvalue() and "at np.copy speed: 40.00" in buf.getvalue()
    buf = io.StringIO()
    _bench.format_goals([r for r in recs if r["kernel"] == "gelu"], out=buf)
    assert "below 1.0" in buf.getvalue() and "scipy" not in buf.getvalue()


def test_bench_rejects_unknown_kernel():
    p = _run("bench", "--kernels", "nope")
    assert p.returncode != 0 and "unknown kernels" in p.stderr


def test_accuracy_subcommand(tmp_path):
    md = tmp_path / "acc.md"
    p = _run("accuracy", "--kernels", "softmax,sigmoid", "-n", "200", "--markdown", str(md))
    assert p.returncode == 0, p.stdout + p.stderr
    text = md.read_text()
    for b in fastact.backends():
        assert f"| softmax | float32 | {b} |" in text


def test_main_job_runs():
    pytest.importorskip("scipy")
    p = _run()
    assert p.returncode == 0, p.stdout + p.stderr
    assert "self-check" in p.stdout and "vs scipy" in p.stdout
