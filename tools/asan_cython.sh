#!/usr/bin/env bash
# Run the Cython backend's tests under AddressSanitizer, once per SIMD path.
#
# Builds a copy of the working tree with -fsanitize=address (never the
# checkout itself), preloads libasan into an ordinary CPython (NumPy's buffers
# then get redzones too) and runs every test that selects "cython" with
# FASTACT_SIMD = x86-64-v4, x86-64-v3 and baseline; the first ASan report
# aborts the run.  Usage: tools/asan_cython.sh [python]   (~2 min here)
set -euo pipefail
py=${1:-python}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$src" ls-files -z | (cd "$src" && xargs -0 cp --parents -t "$work")
cd "$work"
CFLAGS="-fsanitize=address -fno-omit-frame-pointer" LDFLAGS="-fsanitize=address" \
    "$py" setup.py build_ext --inplace -q >/dev/null
export LD_PRELOAD=$(${CC:-gcc} -print-file-name=libasan.so)
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export PYTHONPATH=$work
for simd in x86-64-v4 x86-64-v3 baseline; do
    echo "== FASTACT_SIMD=$simd"
    # the summary line, and the id and error of any failed test
    FASTACT_SIMD=$simd "$py" -m pytest -q -rf -p no:cacheprovider tests -k cython \
        | grep -E "^(FAILED|E  )|passed|failed"
done
