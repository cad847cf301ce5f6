"""One named tolerance per claim the project makes. The tests assert with these names, and the README's
"Tolerances" table quotes them (tests/test_docs.py checks that the two agree)."""
from __future__ import annotations

# Our forward vs the authors' code on the reference inputs (float32, max abs difference, outputs in [0, 1]).
AUTHORS_IO_ATOL = 1e-5
# The fast inference path (srkit.inference.fast) vs the plain eager float32 forward (max abs difference).
FAST_PATH_ATOL = 1e-4
# Tiled forward vs the whole image at once (max abs difference; 1/255 is one grey level).
TILING_ATOL = 1 / 255
# onnxruntime running our ONNX export vs PyTorch (max abs difference, at sizes other than the traced one).
ONNX_ATOL = 1e-4
# Benchmark scores vs the authors' code on the same images and protocol (released weights, Set5/Set14).
PSNR_REPRO_DB = 0.01
SSIM_REPRO = 0.0005
# The same forward on CUDA in float32 (TF32 off, as the tests run it) vs on the CPU: cuDNN's algorithms sum in
# another order than oneDNN's (max abs difference). Not yet measured on a GPU: scripts/device_check.py reports it.
CUDA_FP32_ATOL = 1e-4
# The trainer vs the authors' training loops, float64, after 30 steps (max abs weight difference), and for the
# loop whose first gradient norm (4.5e5) is clipped, which amplifies rounding.
TRAIN_REF_ATOL = 1e-12
TRAIN_REF_CLIP_ATOL = 1e-9
# Opt-in half precision (--half) vs float32: the largest pixel change in grey levels, and the PSNR change.
HALF_MAX_LEVELS = 8
HALF_PSNR_DB = 0.1
# precision="bf16" vs fp32: the Y-PSNR change of the released weights on every Set5/Set14 x2/x3/x4 cell
# (scripts/precision_quality.py writes the table).
BF16_PSNR_DB = 0.01
# A bf16 streamed CPU kernel (srkit.inference.fast.cpu_bf16) vs float64 ops on the same bf16 input: max abs
# difference over the reference's largest magnitude (bf16 weights and stores, float32 sums; measured at most
# 0.007, on the AVX512-BF16 path's Winograd residual blocks).
BF16_KERNEL_RTOL = 0.02

ALL = {name: value for name, value in globals().items() if name.isupper() and name != "ALL"}
