"""Layer 1: images in and out, MATLAB-compatible imresize, metrics, benchmark folders and their download,
the DIV2K training batches."""
