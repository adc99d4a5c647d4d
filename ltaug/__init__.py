"""ltaug: fix long-tailed COCO/LVIS detection and segmentation datasets on the data side.

The engine needs no torch. Data flows read -> index -> plan -> execute -> write -> report.
"""
from ltaug.errors import InputError, LtaugError, SpecError, UsageError
from ltaug.io.dataset import COCO, LVIS, Dataset, save_dataset
from ltaug.io.index import DatasetIndex
from ltaug.io.read import load_dataset

__version__ = "0.1.0"

__all__ = ["COCO", "LVIS", "Dataset", "DatasetIndex", "InputError", "LtaugError", "SpecError", "UsageError",
           "load_dataset", "save_dataset", "__version__"]
