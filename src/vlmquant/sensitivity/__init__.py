"""Per-unit fidelity cost (sensitivity) and the KLD-budget chooser built on it."""
