"""Companion trainer (torchvision detectors, long-tail losses, evaluation). Needs the `train` extra.

Importing this package before torch makes torch's OpenMP threads sleep when they wait
(``OMP_WAIT_POLICY=PASSIVE``, unless the variable is already set) instead of spinning for
up to 300,000 iterations (GNU OpenMP's default). Spinning is harmless only while every
thread has a core to itself: on a machine where other processes also run (two training
runs side by side, a DataLoader worker, other users) a spinning thread burns the time slice
its partner needs to reach the barrier. Measured on the 2-core project machine, batch-2
Faster R-CNN training at 320 px beside two other training processes: 0.23 images/s spinning
against 2.09 passive (`benchmarks/README.md`). libgomp reads the variable once, when torch loads it,
so it has no effect if torch was imported first.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
