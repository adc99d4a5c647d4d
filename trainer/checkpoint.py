"""Reading torch files (checkpoints, backbone weights) without running code from them.

A ``.pt`` file is a pickle: loaded with ``torch.load(weights_only=False)``, a crafted one runs
any code it names. Everything here loads with ``weights_only=True``: only tensors and plain
values (dicts, lists, tuples, strings, numbers, None) are rebuilt, which is all a checkpoint of
``ltaug train`` (model, optimiser, scheduler and scaler states, the epoch, the run's config) and
a state dict of backbone weights hold. A file that holds anything else is refused with one line.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


def read_torch_file(path: str | Path, *, map_location: str = "cpu", what: str = "torch file") -> Any:
    """The content of a torch file, tensors on ``map_location``; a one-line ValueError for a
    missing, unreadable or refused file (``what`` names it in the message)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: {what} not found") from None
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # not a pickle at all (torch names the global it refuses)
            raise ValueError(f"{path}: not a readable {what} (UnpicklingError)") from None
        raise ValueError(f"{path}: refused: this {what} holds Python objects other than tensors and plain "
                         "values, which loading would run; ltaug reads only what `ltaug train` writes and "
                         "plain state dicts") from None
    except Exception as exc:  # noqa: BLE001  torch raises many types for a file that is not one of its own
        raise ValueError(f"{path}: not a readable {what} ({type(exc).__name__})") from None
