"""Layer 3: training: the typed configuration, the run folder, logs, validation, the optimizer step and the
Trainer that composes them."""
