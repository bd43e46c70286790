"""The autoregressive language model over dynamic-rate semantic tokens and their durations."""
