"""U-LiRA's shadow models, run through the same loop as everything else, and cached.

For each of K pairs (seeded by the run's seed and the pair's index): an original is trained with
the pre-training recipe on a random half of the training data, where each example of the forget
request sits in exactly half of the pairs (LiRA's balanced design); the request's examples in the
half are the pair's forget set. Retrain is run on the half without them, and every method of the
run unlearns them from the pair's original (Retrain too, with another seed: the control, whose
accuracy is what "indistinguishable" looks like). Each model's logit-scaled confidence on every
forget example is kept (seed<s>/ulira/<model>/pair<k>/<method>.npz, keyed by configuration), so
a rerun only scores. metrics.ulira turns them into the attack's accuracy, AUC and TPR at 1 % FPR,
which go into the rows of the seed and model (every budget; the original's row measures the
untouched shadow originals).

The shadows see the run through narrow callables (Shadows): train an original on a set, run a
method, get a model's logits, check a cached file against run.json. They return scores and the
seconds they trained; the stage driver adds both where they belong.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from . import storage
from .config import fingerprint
from .data import ImageSet
from .errors import UserError
from .metrics.ulira import balanced_membership, logit_confidence, ulira

Key = tuple[str, "int | None"]  # (method, epochs or None)


@dataclass
class Shadows:
    """What the shadows need of the run, and nothing more."""

    train: Callable[[ImageSet, int, str], tuple[nn.Module, float]]  # (data, seed, desc) -> original, training sec
    # (method, original, retain, forget, seed) -> [(epochs, model) per budget], training sec
    run: Callable[[str, nn.Module, ImageSet, ImageSet, int], tuple[list[tuple[int | None, nn.Module]], float]]
    logits: Callable[[nn.Module, ImageSet], np.ndarray]
    verified: Callable[[str, list[Path]], bool]  # whether cached files still match run.json


@dataclass
class ShadowScores:
    """U-LiRA's figures per (method, epochs) that every pair scored, and the seconds spent training shadows."""

    figures: dict[Key, dict[str, Any]] = field(default_factory=dict)
    training_sec: float = 0.0


def pair_seed(seed: int, pair: int, role: int) -> int:
    """A seed of its own for each pair and role (0 original and methods, 1 Retrain, 2 the control Retrain):
    initialisations vary across pairs, so the Gaussians see that variance and no role shares an init."""
    return int(np.random.default_rng([seed, pair, role, 0x11AA]).integers(2**31))


def capacity(targets: int) -> int:
    """The number of distinct halves of the forget set: more pairs than this would repeat forget sets."""
    return math.comb(targets, targets // 2) if targets >= 2 else 0


def check_capacity(pairs: int, targets: int) -> None:
    """--ulira K above what a forget set of `targets` samples allows is refused before anything is written."""
    if pairs > capacity(targets):
        raise UserError(f"--ulira {pairs} is more shadow pairs than the forget set of {targets} samples allows "
                        f"({capacity(targets)} distinct halves): lower --ulira or raise --train-per-class")


def shadow_half(n_train: int, targets: np.ndarray, member: np.ndarray, seed: int, pair: int) -> np.ndarray:
    """Positions in the training set of pair `pair`'s original: half the non-targets and its member targets."""
    others = np.setdiff1d(np.arange(n_train), targets)
    rng = np.random.default_rng([seed, pair, 0x5AAD])
    half = rng.choice(others, len(others) // 2, replace=False)
    return np.sort(np.concatenate([half, targets[member]]))


def ulira_scores(shadows: Shadows, train: ImageSet, targets: np.ndarray, seed: int, pairs: int, methods: list[str],
                 identity: tuple, folder: Path) -> ShadowScores:
    """Score every method with U-LiRA on `pairs` shadow pairs drawn from `train` (targets: the forget set's
    positions in it). identity: what, with the pair, keys each pair's cached scores under `folder`."""
    target_set = train.subset(targets)
    member = balanced_membership(pairs, len(targets), seed)
    labels = target_set.labels.cpu().numpy()
    scores: dict[Key, list[np.ndarray]] = {}
    retrained: list[np.ndarray] = []
    out = ShadowScores()
    for pair in range(pairs):
        half = shadow_half(len(train), targets, member[pair], seed, pair)
        kept = half[~np.isin(half, targets)]
        key = fingerprint("ulira", 2, *identity, pair, pairs)
        path = folder / f"pair{pair}" / f"scores-{key}.npz"
        found = load_scores(path) if path.is_file() and shadows.verified(f"{identity[0]} U-LiRA pair {pair}",
                                                                         [path]) else {}
        if all(any(m == method for m, _ in found) for method in ["retrain-shadow", "original", *methods]):
            pair_scores = found
        else:
            pair_scores, seconds = shadow_pair(shadows, train, seed, pair, half, kept, targets[member[pair]],
                                               target_set, labels, methods)
            out.training_sec += seconds
            save_scores(path, pair_scores)
        retrained.append(pair_scores.pop(("retrain-shadow", None)))
        for k, value in pair_scores.items():
            scores.setdefault(k, []).append(value)
    for k, values in scores.items():
        if len(values) == pairs:
            out.figures[k] = {**ulira(np.stack(values), np.stack(retrained), member), "ulira_pairs": pairs}
    return out


def shadow_pair(shadows: Shadows, train: ImageSet, seed: int, pair: int, half: np.ndarray, kept: np.ndarray,
                forgotten: np.ndarray, target_set: ImageSet, labels: np.ndarray,
                methods: list[str]) -> tuple[dict[Key, np.ndarray], float]:
    """The scores of one pair's models on the target examples, and the seconds its training took."""
    original, seconds = shadows.train(train.subset(half), pair_seed(seed, pair, 0), f"shadow {pair}")
    retain, forget = train.subset(kept), train.subset(forgotten)

    def score(model: nn.Module) -> np.ndarray:
        return logit_confidence(shadows.logits(model, target_set), labels)

    out: dict[Key, np.ndarray] = {("original", None): score(original)}
    runs = [("retrain-shadow", pair_seed(seed, pair, 1))]
    runs += [(m, pair_seed(seed, pair, 2 if m == "retrain" else 0)) for m in methods]
    for method, run_seed in runs:
        budgets, spent = shadows.run("retrain" if method == "retrain-shadow" else method, original, retain, forget,
                                     run_seed)
        seconds += spent
        for epochs, model in budgets:
            out[(method, epochs)] = score(model)
    return out, seconds


def load_scores(path: Path) -> dict[Key, np.ndarray]:
    """The scores save_scores wrote: (method, epochs or None) -> scores on the target examples."""
    with np.load(path, allow_pickle=False) as data:
        return {(str(m), None if int(e) < 0 else int(e)): data[f"s{i}"]
                for i, (m, e) in enumerate(zip(data["methods"], data["epochs"]))}


def save_scores(path: Path, scores: dict[Key, np.ndarray]) -> None:
    keys = list(scores)
    arrays = {f"s{i}": scores[k] for i, k in enumerate(keys)}
    arrays["methods"] = np.array([m for m, _ in keys])
    arrays["epochs"] = np.array([-1 if e is None else e for _, e in keys])
    with storage.atomic_path(path, ".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
