"""Companion trainer (torchvision detectors, long-tail losses, evaluation). Needs the `train` extra."""
