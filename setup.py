"""Build script: everything declarative lives in pyproject.toml; this file
only adds the optional compiled extension (the "cython" backend)."""

from setuptools import setup

setup()
