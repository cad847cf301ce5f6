"""Layer 2: running a model: predictors, tiles and their planning, the fast path and its CPU kernels,
benchmark evaluation, upscaling image files, ONNX export."""
