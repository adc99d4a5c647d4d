"""Companion trainer (torchvision detectors, long-tail losses, evaluation). Needs the `train` extra.

Modules in dependency order: each imports only modules above it, those after ``<-``
(``tests/test_import_cycles.py`` fails on any import cycle)::

    checkpoint      torch files read without running code (weights_only)
    losses          long-tail box classification losses, by name
    model           Faster / Mask R-CNN builders, presets, backbones,   <- losses, checkpoint
                    the linear or cosine box classifier
    samplers        RFS, class-aware, plain samplers by name; aspect-ratio batches
    config          TrainConfig; the run's preset, model, resume rules  <- model, samplers
    counts          which file gives a run its class frequencies
    data            DetectionDataset: images, targets, augmentation
    evaluate        bbox / segm AP with r/c/f bins (COCO and LVIS rules)
    bootstrap       paired-bootstrap intervals of AP differences        <- evaluate
    inference       predict, evaluate a model, load a saved run         <- config, counts, data, evaluate
    decouple        cRT, tau-normalisation, BAGS' stage 2               <- model, inference
    engine          train(): the training loop                          <- config, counts, data, samplers,
                                                                           inference, decouple
    compare_config  the config of ``ltaug compare``                     <- config, losses
    compare_report  its tables and plots                                <- compare_config, bootstrap, inference
    compare         runs the study                                      <- compare_config, compare_report,
                                                                           config, engine, inference, decouple

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
