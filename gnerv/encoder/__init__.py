"""Fitting and coding: what an encoder needs beyond the decoder (training, fine-tune, bit
allocation, progressive residual stages, targets)."""
