"""Only the optional compiled kernels live here; everything else is in pyproject.toml."""
from setuptools import Extension, setup

# The streamed kernels of the CPU fast path (srkit/inference/fast/csrc/, Python side in fast/cpu_fp32.py):
# one file per instruction set, each built with its flags (the one the CPU runs is chosen when first used).
# Optional: on a machine without a C compiler, or a CPU family the flags do not fit, a build is skipped and
# that path runs oneDNN / plain ops instead. The bf16 kernels (fast/cpu_bf16.py) take AVX512-BF16, and AMX-BF16
# where the CPU has it (chosen at run time), from one source.
CSRC = "srkit/inference/fast/csrc"
setup(ext_modules=[
    *[Extension(f"srkit.inference.fast._fp32_{isa}", [f"{CSRC}/fp32_{isa}.c"], depends=[f"{CSRC}/fp32_streamed.h"],
                optional=True, extra_compile_args=["-O3", *flags, "-pthread"], extra_link_args=["-pthread"])
      for isa, flags in (("avx512", ["-mavx512f", "-mfma"]), ("avx2", ["-mavx2", "-mfma"]))],
    Extension("srkit.inference.fast._cpu_bf16", [f"{CSRC}/cpu_bf16_avx512bf16.c"], optional=True,
              extra_compile_args=["-O3", "-mavx512f", "-mavx512bf16", "-mavx512bw", "-mavx512vl", "-mfma",
                                  "-mamx-tile", "-mamx-bf16", "-pthread"], extra_link_args=["-pthread"]),
])
