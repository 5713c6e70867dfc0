"""Datasets, class-wise splits, splits by sample ids, and on-device batches."""
from .batches import EVAL_BATCH, augment, eval_batches, shuffled_batches, to_float, train_batches
from .ids import split_by_ids
from .load import load_dataset
from .raw import RawDataset
from .sources import DATASETS, RestrictedUnpickler, restricted_load
from .splits import ImageSet, Splits, balanced_indices, class_index, class_splits
from .user import streamed

__all__ = ["DATASETS", "EVAL_BATCH", "ImageSet", "RawDataset", "RestrictedUnpickler", "Splits", "augment", "balanced_indices",
           "class_index", "class_splits", "eval_batches", "load_dataset", "restricted_load", "shuffled_batches",
           "split_by_ids", "streamed", "to_float", "train_batches"]
