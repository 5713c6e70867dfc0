"""What the representation still knows: a linear probe on the frozen penultimate features.

A model can stop predicting a class while its features still carry it (a head that hides the
class, such as logit-mask): UA and output-based attacks cannot see that, a probe can. A
logistic regression is trained on the penultimate features of half of the test set of every
class (forgotten ones included) and scored on the other half (probe_acc), on the forgotten
training samples themselves (probe_forget_acc: the data the request is about, and, on small data,
many more samples than a forgotten class's test half) and, where whole classes are forgotten, on
the held-out test samples of those classes (probe_forget_test_acc). Read them beside Retrain's:
Retrain's features were never shaped by the forgotten data, so its probe sets what "gone" looks
like; a model that kept the data's features reads it better.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from ..data import EVAL_BATCH, ImageSet, eval_batches
from .blas import one_blas_thread
from .entry import Evidence, EvidenceInputs
from .finite import require_finite
from .spec import spec_of


def classifier_head(model: nn.Module, num_classes: int) -> nn.Linear | None:
    """The last linear layer mapping to the classes: its input is the penultimate representation."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    return heads[-1] if heads else None


@contextlib.contextmanager
def head_inputs(model: nn.Module, num_classes: int):
    """While open, the inputs of the model's classifier head (the penultimate features), one tensor per
    forward pass, in call order; None when no head is found."""
    head = classifier_head(model, num_classes)
    if head is None:
        yield None
        return
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().flatten(1).float().cpu()))
    try:
        yield captured
    finally:
        hook.remove()


def stacked(captured: list[torch.Tensor], width: int | None = None) -> np.ndarray:
    """Captured feature batches as one array ((0, width) when nothing was captured)."""
    return torch.cat(captured).numpy() if captured else np.zeros((0, width or 0), dtype=np.float32)


@torch.inference_mode()
def penultimate_features(model: nn.Module, data: ImageSet, num_classes: int, batch_size: int = EVAL_BATCH) -> np.ndarray | None:
    """The input of the classifier head for every sample (eval mode), or None when no head is found."""
    with head_inputs(model, num_classes) as captured:
        if captured is None:
            return None
        was_training = model.training
        model.eval()
        try:
            for x, _ in eval_batches(data, batch_size):
                model(x)
        finally:
            model.train(was_training)
    return stacked(captured, classifier_head(model, num_classes).in_features)


def halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of indices into two halves, stratified by class (every class in both when it can be)."""
    rng = np.random.default_rng([seed, 0x9B0BE])
    first, second = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        cut = (len(idx) + 1) // 2
        first.append(idx[:cut])
        second.append(idx[cut:])
    if not first:  # no labels (a dataset without a test split): nothing to split
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   extra: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, float]:
    """Fit a standardised logistic regression on (train_x, train_y); accuracy (%) on the test part and on each extra set."""
    nan = float("nan")
    if len(train_y) == 0 or len(np.unique(train_y)) < 2:
        return {"test": nan, **{k: nan for k in extra or {}}}
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))

    def score(x: np.ndarray, y: np.ndarray) -> float:
        return float((probe.predict(x) == y).mean() * 100.0) if len(y) else nan

    with one_blas_thread():
        probe.fit(train_x, train_y)
        return {"test": score(test_x, test_y), **{k: score(x, y) for k, (x, y) in (extra or {}).items()}}


def probe_metrics(model: nn.Module, splits, seed: int = 0, batch_size: int = EVAL_BATCH,
                  features: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """probe_acc (held-out test, every class), probe_forget_acc (the forgotten training samples) and
    probe_forget_test_acc (the forgotten classes' held-out test samples; NaN for random forgetting).

    features: each split's penultimate features where the evaluation captured them in its own forward
    passes (evaluate.collect_logits); computed here otherwise.
    """
    k = splits.num_classes
    if features is None or any(features.get(name) is None for name in ("test_retain", "test_forget", "forget_train")):
        test = ImageSet.join([splits.test_retain, splits.test_forget])
        features = {"test": penultimate_features(model, test, k, batch_size),
                    "forget_train": penultimate_features(model, splits.forget_train, k, batch_size)}
    else:
        features = {"test": np.concatenate([features["test_retain"], features["test_forget"]]),
                    "forget_train": features["forget_train"]}
    feats = features["test"]
    if feats is None:
        return {"probe_acc": float("nan"), "probe_forget_acc": float("nan"), "probe_forget_test_acc": float("nan")}
    labels = torch.cat([splits.test_retain.labels, splits.test_forget.labels]).cpu().numpy()
    fit_idx, score_idx = halves(labels, seed)
    held_out = np.isin(labels[score_idx], splits.forget_classes)
    sets = {"forget": (features["forget_train"], splits.forget_train.labels.cpu().numpy()),
            "forget_test": (feats[score_idx][held_out], labels[score_idx][held_out])}
    acc = probe_accuracy(feats[fit_idx], labels[fit_idx], feats[score_idx], labels[score_idx], sets)
    return {"probe_acc": acc["test"], "probe_forget_acc": acc["forget"], "probe_forget_test_acc": acc["forget_test"]}


def _compute(inputs: EvidenceInputs) -> dict[str, float]:
    for split, values in (inputs.features or {}).items():
        if values is not None:
            require_finite(values, f"the model's features on {split}")
    return probe_metrics(inputs.model, inputs.splits, inputs.seed, inputs.batch_size, inputs.features)


# probe_accuracy limits BLAS itself, around the fit only (the feature passes keep torch's threads).
ENTRY = Evidence("probe", _compute, tuple(spec_of(k) for k in ("probe_acc", "probe_forget_acc", "probe_forget_test_acc")),
                 model_level=True, enabled=lambda inputs: inputs.evidence.probe, timing="probe",
                 one_blas_thread=False, prefixes=("probe_",))
