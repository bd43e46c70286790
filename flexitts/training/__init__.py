"""Training: the shared accelerate loop, resumable checkpoints, samplers, and one entry per model."""
