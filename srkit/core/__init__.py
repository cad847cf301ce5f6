"""Layer 0: the model-family registry, checkpoints, shared layers, resizing, atomic writes, verified
downloads, process groups, tolerances. Imports nothing else from srkit."""
