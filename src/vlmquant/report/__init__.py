"""Report stage: markdown reports rendered from the recorded runs."""
