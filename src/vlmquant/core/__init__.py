"""The thin core every stage shares: configs, bad-input errors, atomic outputs, run records."""
