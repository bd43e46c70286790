"""The dynamic-rate speech codec: ASR features, frame scheduling, quantisers, encoder and decoder."""
