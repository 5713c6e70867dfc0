"""Evaluate a model on the four splits: logits once, every metric from them."""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from torch import nn

from .. import distributed
from ..config import EvidenceConfig
from ..data import EVAL_BATCH, ImageSet, Splits, eval_batches
from .accuracy import accuracy, unlearning_metrics
from .attacks import attack_suite
from .blas import one_blas_thread
from .challenge import challenge_metrics
from .finite import floor_logits, require_finite, require_finite_logits
from .head import head_response
from .probe import classifier_head, head_inputs, probe_metrics, stacked
from .relearn import RelearnRecipe, relearn_steps

SPLITS = ("forget_train", "retain_train", "test_retain", "test_forget")


@torch.inference_mode()
def predict(model: nn.Module, data: ImageSet, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Logits of every sample, in eval mode under inference_mode; the model's mode is restored.

    Under torchrun each rank computes its shard and every rank gets all of them (distributed.py).
    """
    n = len(data)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    sharded = distributed.active()
    part = data.subset(torch.arange(n)[distributed.shard_slice(n)]) if sharded else data
    was_training = model.training
    model.eval()
    try:
        chunks = [model(x).float() for x, _ in eval_batches(part, batch_size)]
        if not chunks:  # fewer samples than ranks: this rank still needs the logits' width
            chunks = [model(next(eval_batches(data, 1))[0]).float()[:0]]
    finally:
        model.train(was_training)
    logits = torch.cat(chunks)
    return (distributed.gather_rows(logits, n) if sharded else logits).cpu().numpy()


def set_accuracy(model: nn.Module, data: ImageSet, batch_size: int = EVAL_BATCH) -> float:
    """Top-1 accuracy (%) of the model on one set (NaN when it is empty): the per-epoch forgetting check."""
    if len(data) == 0:
        return float("nan")
    return accuracy(predict(model, data, batch_size), data.labels.cpu().numpy())


def collect_logits(model: nn.Module, splits: Splits, batch_size: int = EVAL_BATCH,
                   features: dict[str, np.ndarray | None] | None = None) -> tuple[dict, dict]:
    """Every split's logits and labels. features: a dict to fill with each split's penultimate features,
    captured in the same forward passes (the probe then runs none of its own; single process only)."""
    named = splits.named()
    capture = features is not None and not distributed.active()
    with head_inputs(model, splits.num_classes) if capture else contextlib.nullcontext() as captured:
        logits = {}
        for k in SPLITS:
            start = len(captured) if captured is not None else 0
            logits[k] = predict(model, named[k], batch_size)
            if captured is not None:
                features[k] = stacked(captured[start:], classifier_head(model, splits.num_classes).in_features)
    labels = {k: named[k].labels.cpu().numpy() for k in SPLITS}
    return logits, labels


def metrics_from_logits(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], seed: int = 0,
                        mia_cap: int = 1000, evidence: EvidenceConfig | None = None,
                        timings: dict[str, float] | None = None) -> dict[str, float]:
    """UA, RA, TA, forget-test accuracy, every membership attack and the challenge's loss attack, in percent.

    mia_efficacy / mia_attack_acc are the paper's attack (SVC on true-class confidence); the other
    attacks of the suite follow (keys from attacks.attack_keys), all on the same shadow draws.
    `timings` (optional) accumulates the seconds each part took.
    """
    evidence = evidence or EvidenceConfig()
    require_finite_logits(logits)  # no NaN reaches an accuracy, an attack or a verdict
    with one_blas_thread():
        with timed(timings, "attacks"):
            metrics = {**unlearning_metrics(logits, labels),
                       **attack_suite(logits, labels, seed, mia_cap, draws=evidence.mia_draws,
                                      protocol=evidence.mia_protocol)}
        if evidence.challenge:
            with timed(timings, "challenge"):
                metrics.update(challenge_metrics(logits, labels, seed))
    metrics.update(head_response(logits, labels))
    return metrics


def model_evidence(model: nn.Module, splits: Splits, seed: int, evidence: EvidenceConfig,
                   original: nn.Module | None = None, batch_size: int = EVAL_BATCH,
                   timings: dict[str, float] | None = None,
                   features: dict[str, np.ndarray | None] | None = None) -> dict[str, float]:
    """What the outputs cannot show: the probe on the features (those collect_logits captured, when
    given) and, given the original model, relearn time."""
    out: dict[str, float] = {}
    if evidence.probe:
        for split, values in (features or {}).items():
            if values is not None:
                require_finite(values, f"the model's features on {split}")
        with timed(timings, "probe"):
            out.update(probe_metrics(model, splits, seed, batch_size, features))
    if evidence.relearn and original is not None:
        recipe = RelearnRecipe(evidence.relearn_share, evidence.relearn_lr, evidence.relearn_max_steps)
        with timed(timings, "relearn"):
            out.update(relearn_steps(model, splits.forget_train, original, seed, recipe))
    return out


@contextlib.contextmanager
def timed(timings: dict[str, float] | None, part: str):
    """Add the block's wall seconds to timings[part] (nothing when timings is None)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[part] = timings.get(part, 0.0) + time.perf_counter() - start


def per_sample_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each sample (for the Figure 2 histograms and loss-based attacks)."""
    if len(labels) == 0:
        return np.zeros(0)
    z = floor_logits(logits)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]
