"""Calibration set builder (COCO 2017 captions, an HF dataset on disk, or the synthetic demo)."""
