"""Every docstring example in fastact runs and prints what it says, on every
backend (they are written to hold within each backend's error bound)."""

import doctest
import importlib

import pytest

KERNEL_MODULES = ["fastact", "fastact._api", "fastact._losses", "fastact.special"]


def _doctest(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, raise_on_error=False)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("module", KERNEL_MODULES)
def test_docstring_examples(backend, module):
    _doctest(module)


def test_backend_and_thread_examples():
    # outside any use_backend() block: these examples switch the process default
    _doctest("fastact._config")
