"""Only the optional compiled kernel lives here; everything else is in pyproject.toml."""
from setuptools import Extension, setup

# srkit/inference/_cpu_kernels.c: the streamed kernels of the CPU fast path (srkit/inference/cpu_kernels.py). Optional: on a
# machine without a C compiler or on a CPU family the flags do not fit, the build is skipped and that path
# runs plain ops instead.
setup(ext_modules=[Extension("srkit.inference._cpu_kernels", ["srkit/inference/_cpu_kernels.c"], optional=True,
                             extra_compile_args=["-O3", "-mavx512f", "-mfma", "-pthread"],
                             extra_link_args=["-pthread"])])
