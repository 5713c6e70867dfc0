"""The loss attack of the NeurIPS 2023 machine-unlearning challenge: forget set against unseen data.

The challenge's starting kit scores an unlearned model by how well a logistic regression tells the
forget set's per-sample losses from those of samples the model never saw: the larger set is
sub-sampled to the smaller (balanced), and the accuracy is cross-validated over shuffled
stratified splits (10 in the kit). 50 % is ideal: the forgotten samples look unseen, as they do
to Retrain. Unlike the SVC attacks this reads the forget set directly, with no shadow model.

Unseen data: the test samples of the forgotten classes where the request forgets classes (same
distribution as the forget set), else the test samples of the classes the forget set holds (random or
named samples: all of the test set when every class is among them). One departure from the
kit: the loss is standardised before the regression, which the kit's unscaled regression needs
on tiny losses (its L2 penalty kept it at chance; docs/design.md trap 8, reproduced in tests/metrics).
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit

from .attacks import loss, loss_lr_attack
from .entry import Evidence, EvidenceInputs
from .spec import spec_of


def challenge_attack(forget_loss: np.ndarray, unseen_loss: np.ndarray, seed: int = 0,
                     n_splits: int = 10) -> dict[str, float]:
    """Cross-validated accuracy (%) of telling forget losses from unseen ones, mean and std over splits."""
    forget_loss, unseen_loss = np.ravel(forget_loss), np.ravel(unseen_loss)
    n = min(len(forget_loss), len(unseen_loss))
    if n < 6:  # too few for a stratified split with a test part of each class (10 % of 2n must be 2)
        return {"challenge_mia_acc": float("nan"), "challenge_mia_acc_spread": float("nan"), "challenge_mia_n": 2 * n}
    rng = np.random.default_rng(seed)
    forget = rng.permutation(forget_loss)[:n]
    unseen = rng.permutation(unseen_loss)[:n]
    x = np.concatenate([unseen, forget])[:, None]
    y = np.concatenate([np.zeros(n), np.ones(n)])
    cv = StratifiedShuffleSplit(n_splits=n_splits, random_state=seed)
    # cross_val_score's scores, without its per-split dispatch (most of the time on a few hundred losses)
    scores = np.array([100.0 * float(np.mean(loss_lr_attack().fit(x[fit], y[fit]).predict(x[held]) == y[held]))
                       for fit, held in cv.split(x, y)])
    return {"challenge_mia_acc": float(scores.mean()), "challenge_mia_acc_spread": float(scores.std(ddof=1)),
            "challenge_mia_n": 2 * n}


def challenge_metrics(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], seed: int = 0) -> dict[str, float]:
    """The challenge attack on a model's split logits (see the module's note for the unseen set)."""
    forget_loss = loss(logits["forget_train"], labels["forget_train"])  # loss floors -inf logits itself
    if len(labels.get("test_forget", ())):
        return challenge_attack(forget_loss, loss(logits["test_forget"], labels["test_forget"]), seed=seed)
    same = np.isin(labels["test_retain"], labels["forget_train"])
    return challenge_attack(forget_loss, loss(logits["test_retain"][same], labels["test_retain"][same]), seed=seed)


def _compute(inputs: EvidenceInputs) -> dict[str, float]:
    return challenge_metrics(inputs.logits, inputs.labels, inputs.seed)


ENTRY = Evidence("challenge", _compute, (spec_of("challenge_mia_acc"),), enabled=lambda inputs: inputs.evidence.challenge,
                 timing="challenge", prefixes=("challenge_",))
