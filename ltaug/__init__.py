"""ltaug: fix long-tailed COCO/LVIS detection and segmentation datasets on the data side.

The engine needs no torch. Data flows read -> index -> plan -> execute -> write -> report.
"""
from .dataset import COCO, LVIS, Dataset, load_dataset, save_dataset
from .errors import InputError, LtaugError, UsageError
from .index import DatasetIndex

__version__ = "0.1.0"

__all__ = ["COCO", "LVIS", "Dataset", "DatasetIndex", "InputError", "LtaugError", "UsageError",
           "load_dataset", "save_dataset", "__version__"]
