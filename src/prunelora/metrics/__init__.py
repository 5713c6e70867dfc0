"""Metrics: accuracy (UA, RA, TA), membership inference, cost."""
from .accuracy import accuracy, unlearning_metrics
from .cost import MemoryMeter, Stopwatch, synchronize
from .mia import membership_attack, mia_efficacy, true_class_confidence

__all__ = ["MemoryMeter", "Stopwatch", "accuracy", "membership_attack", "mia_efficacy", "synchronize",
           "true_class_confidence", "unlearning_metrics"]
