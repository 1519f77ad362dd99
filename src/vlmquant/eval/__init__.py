"""Fidelity stage: how far a quantized checkpoint drifted from its base, in numbers."""
