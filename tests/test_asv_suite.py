"""The asv suite is generated from the registry: every kernel gets its
timing class, row kernels and losses their short-rows class, kernels of
any real input their far-entries class, whose cases run (a broken
benchmark would otherwise show only in an asv run)."""

import importlib.util
import os

import numpy as np
import pytest

import fastact
from fastact import _registry

SUITE = os.path.join(os.path.dirname(__file__), os.pardir, "asv_benchmarks", "benchmarks", "kernels.py")


@pytest.fixture(scope="module")
def suite():
    old = {k: os.environ.get(k) for k in ("FASTACT_ASV_SMOKE", "FASTACT_ASV_SHORT_SHAPES", "FASTACT_ASV_FAR_SHAPES")}
    os.environ["FASTACT_ASV_SMOKE"] = "0"
    os.environ["FASTACT_ASV_SHORT_SHAPES"] = "150x3,70x7"
    os.environ["FASTACT_ASV_FAR_SHAPES"] = "40x12,8x64"
    try:
        spec = importlib.util.spec_from_file_location("fastact_asv_kernels", SUITE)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    backend, threads = fastact.get_backend(), fastact.get_num_threads()
    yield mod
    fastact.set_backend(backend)  # the benchmarks' setup sets both for the process
    fastact.set_num_threads(threads)


def test_every_kernel_has_its_timing_classes(suite):
    for name, k in _registry.KERNELS.items():
        assert hasattr(suite, f"Time_{name}"), name
        short = getattr(suite, f"TimeShortRows_{name}", None)
        assert (short is not None) == (k.kind in suite.AXIS_KINDS), name
        if short is not None:
            impls, dtypes, shapes, axes, threads = short.params
            assert shapes == ["150x3", "70x7"] and axes == [-1] and threads == [1]
            assert "torch" in impls and all(i.startswith("fastact-") for i in impls if i != "torch")
        far = getattr(suite, f"TimeFar_{name}", None)
        assert (far is not None) == (k.domain[0] < 0), name
        if far is not None:
            assert far.far and far.params[2] == ["40x12", "8x64"]


@pytest.mark.parametrize("kernel", [k for k, v in _registry.KERNELS.items()
                                    if v.kind in ("rows", "loss_prob_grad")])
def test_short_rows_cases_run_on_the_compiled_backends(suite, kernel):
    cls = getattr(suite, f"TimeShortRows_{kernel}")
    ran = 0
    for impl in cls.params[0]:
        if impl.startswith("fastact-") and impl[len("fastact-"):] in fastact.backends():
            b = cls()
            b.setup(impl, "float32", "150x3", -1, 1)
            b.time_call()
            ran += 1
    if not ran:
        pytest.skip("no compiled backend built")
    assert fastact.get_num_threads() == 1


@pytest.mark.parametrize("kernel", ["softmax", "log_softmax_backward", "sigmoid", "cross_entropy_index_grad"])
def test_far_cases_run_with_far_entries(suite, kernel, monkeypatch):
    cls = getattr(suite, f"TimeFar_{kernel}")
    seen = []
    real_case = suite.ft.case

    def spy(*a, **kw):
        seen.append(kw["x"])
        return real_case(*a, **kw)

    monkeypatch.setattr(suite.ft, "case", spy)
    for impl in cls.params[0]:
        if impl.startswith("fastact-") and impl[len("fastact-"):] in fastact.backends():
            b = cls()
            b.setup(impl, "float64", "40x12", -1, 1)
            b.time_call()
    if not seen:
        pytest.skip("no compiled backend built")
    for x in seen:
        assert x.shape == (40, 12)
        assert np.all(x[:, 1::2] == suite.FAR) and np.all(np.abs(x[:, ::2]) < 10)
