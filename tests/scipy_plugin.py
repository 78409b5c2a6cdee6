"""pytest plugin: run SciPy's own test files against ``fastact.special``.

Loaded with ``-p scipy_plugin`` by ``test_scipy_suite.py``.  Before SciPy's
test modules are imported, the six functions in ``scipy.special`` are
replaced by fastact's, so that the tests' ``from scipy.special import
logsumexp`` binds fastact's function; collection then checks that every
collected module really holds fastact's functions, so a silently unpatched
run cannot pass.
"""

import scipy.special
from scipy._lib import _array_api

import fastact.special

NAMES = ("softmax", "log_softmax", "logsumexp", "expit", "logit", "log_expit")


def pytest_configure(config):
    table = _array_api.xp_capabilities_table
    for name in NAMES:
        original = getattr(scipy.special, name)
        ours = getattr(fastact.special, name)
        if original in table:  # same array-API capabilities as SciPy's function
            table[ours] = table[original]
        setattr(scipy.special, name, ours)


def pytest_collection_modifyitems(session, config, items):
    modules = {item.module for item in items if getattr(item, "module", None)}
    assert modules, "no SciPy test module collected"
    seen = set()
    for mod in modules:
        for name in NAMES:
            if name in vars(mod):
                assert vars(mod)[name] is getattr(fastact.special, name), (
                    f"{mod.__name__}.{name} is not fastact.special.{name}"
                )
                seen.add(name)
    assert seen == set(NAMES), f"SciPy's tests never imported {set(NAMES) - seen}"

