"""Metrics: accuracy (UA, RA, TA), membership inference, cost."""
from .accuracy import accuracy, unlearning_metrics
from .attacks import ATTACKS, attack_suite
from .cost import MemoryMeter, Stopwatch, synchronize
from .mia import membership_attack, mia_efficacy, true_class_confidence

__all__ = ["ATTACKS", "MemoryMeter", "attack_suite", "Stopwatch", "accuracy", "membership_attack", "mia_efficacy", "synchronize",
           "true_class_confidence", "unlearning_metrics"]
