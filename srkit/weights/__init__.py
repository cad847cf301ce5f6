"""Layer 1: released weights (the manifest built from every family's ``pretrained`` entries), loading any
checkpoint into its family's model, conversion."""
