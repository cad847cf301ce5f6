"""Only the optional compiled kernels live here; everything else is in pyproject.toml."""
from setuptools import Extension, setup

# srkit/inference/_cpu_kernels.c: the streamed kernels of the CPU fast path (srkit/inference/cpu_kernels.py),
# built twice: for AVX-512F and for AVX2 + FMA (the one the CPU runs is chosen when first used). Optional: on a
# machine without a C compiler, or a CPU family the flags do not fit, a build is skipped and that path runs
# plain ops instead.
SOURCE = ["srkit/inference/_cpu_kernels.c"]
# srkit/inference/fast/csrc/cpu_bf16_avx512bf16.c: the bf16 kernels on AVX512-BF16 (fast/cpu_bf16.py), optional too
BF16_SOURCE = ["srkit/inference/fast/csrc/cpu_bf16_avx512bf16.c"]
setup(ext_modules=[
    Extension("srkit.inference._cpu_kernels", SOURCE, optional=True,
              extra_compile_args=["-O3", "-mavx512f", "-mfma", "-pthread"], extra_link_args=["-pthread"]),
    Extension("srkit.inference._cpu_kernels_avx2", SOURCE, optional=True,
              extra_compile_args=["-O3", "-mavx2", "-mfma", "-DSRKIT_AVX2", "-pthread"], extra_link_args=["-pthread"]),
    Extension("srkit.inference.fast._cpu_bf16", BF16_SOURCE, optional=True,
              extra_compile_args=["-O3", "-mavx512f", "-mavx512bf16", "-mavx512bw", "-mavx512vl", "-mfma",
                                  "-mamx-tile", "-mamx-bf16", "-pthread"],
              extra_link_args=["-pthread"]),
])
