#!/usr/bin/env bash
# The streamed CPU kernels' tests (tests/test_cpu_kernels.py, both builds; tests/test_cpu_bf16.py, the bf16 build
# where the CPU has AVX512-BF16, its tile loads and stores made visible by -DSRKIT_CHECK_TILES) under
# AddressSanitizer: the C libraries are rebuilt with -fsanitize=address into a temporary folder, loaded through SRKIT_CPU_KERNELS_LIB, and
# the sanitizer's runtime is preloaded into the (uninstrumented) Python process, since ctypes loads the library
# after Python starts. Leak checking is off: Python and torch keep memory until exit by design. Any invalid
# read or write aborts the run with the sanitizer's report.
#
#     bash scripts/asan_kernels.sh            # PYTHON=... to use another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CC=${CC:-gcc}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
suffix=$("$PY" -c "import importlib.machinery as m; print(m.EXTENSION_SUFFIXES[0])")
csrc=srkit/inference/fast/csrc
common=(-O1 -g -fsanitize=address -fno-omit-frame-pointer -shared -fPIC -pthread)
"$CC" -mavx512f -mfma "${common[@]}" "$csrc/fp32_avx512.c" -o "$out/_fp32_avx512$suffix"
"$CC" -mavx2 -mfma "${common[@]}" "$csrc/fp32_avx2.c" -o "$out/_fp32_avx2$suffix"
"$CC" -O1 -g -fsanitize=address -fno-omit-frame-pointer -shared -fPIC -pthread -DSRKIT_CHECK_TILES \
    -mavx512f -mavx512bf16 -mavx512bw -mavx512vl -mfma -mamx-tile -mamx-bf16 \
    "$csrc/cpu_bf16_avx512bf16.c" -o "$out/_cpu_bf16$suffix"
export LD_PRELOAD="$("$CC" -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
    SRKIT_CPU_KERNELS_LIB="$out"
"$PY" -c "from srkit.inference.fast import cpu_fp32 as k; lib = k._library()
assert lib and lib._name.startswith('$out'), f'the sanitized build was not loaded: {lib}'
print('sanitized build:', lib._name)"
"$PY" -m pytest -q -p no:cacheprovider tests/test_cpu_kernels.py "$@"
if grep -qw avx512_bf16 /proc/cpuinfo; then
    "$PY" -c "from srkit.inference.fast import cpu_bf16 as k; lib = k._library()
assert lib and lib._name.startswith('$out'), f'the sanitized bf16 build was not loaded: {lib}'
print('sanitized bf16 build:', lib._name)"
    "$PY" -m pytest -q -p no:cacheprovider tests/test_cpu_bf16.py "$@"
fi
