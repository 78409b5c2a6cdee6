"""The README's Python examples run as written."""

import importlib.util
import os
import re

import numpy as np
import pytest

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def _blocks():
    if not os.path.exists(README):
        pytest.skip("README.md not shipped with this install")
    text = open(README, encoding="utf-8").read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_examples_run(capsys):
    blocks = _blocks()
    assert len(blocks) >= 3
    ns = {}
    import fastact

    backend, threads = fastact.get_backend(), fastact.get_num_threads()
    try:
        for code in blocks:
            if "special.logsumexp(a, axis=None" in code:  # the signature listing
                continue
            if "import numba" in code and importlib.util.find_spec("numba") is None:
                continue  # the Numba users' example needs numba
            exec(compile(code, "README.md", "exec"), ns)
    finally:  # the examples change process-wide settings
        fastact.set_backend(backend)
        fastact.set_num_threads(threads)
    printed = capsys.readouterr().out.split()
    assert float(printed[-1]) == pytest.approx(0.138, abs=5e-4)
    assert ns["dx"].shape == ns["x"].shape and ns["x"].dtype == np.float32
