"""Every docstring example in fastact runs and prints what it says, on every
backend (they are written to hold within each backend's error bound)."""

import doctest
import importlib

import pytest

import fastact

MODULES = ["fastact", "fastact._api", "fastact._losses", "fastact._config", "fastact.special"]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(backend, module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, raise_on_error=False)
    assert result.attempted > 0
    assert result.failed == 0
