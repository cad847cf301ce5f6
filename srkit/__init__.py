"""srkit: the engine shared by carn/ and overnet/ (data, metrics, resize, tiling, checkpoints, sampler, trainer)."""
