"""srkit: the engine of the per-paper packages; it knows no model by name.

Layers, each importing only the ones above it in this list:

- ``srkit.core``: the model-family registry and contract, checkpoints, shared layers, atomic writes,
  verified downloads, process groups, tolerances;
- ``srkit.data`` (images, metrics, benchmarks, training batches) and ``srkit.weights`` (the model zoo and
  checkpoint loading);
- ``srkit.inference`` (predictors, tiles, the fast path, evaluation, upscaling, ONNX) and ``srkit.report``
  (the HTML report of an evaluation);
- ``srkit.training``;
- ``srkit.cli`` (the command lines) and ``srkit.api`` (the three-line Python API).
"""
