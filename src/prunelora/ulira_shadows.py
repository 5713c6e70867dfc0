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
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import storage
from .config import fingerprint, to_dict
from .errors import UserError
from .metrics.evaluate import predict
from .metrics.ulira import balanced_membership, logit_confidence, ulira
from .models import build_model, get_spec
from .runner import method_context, run_method

if TYPE_CHECKING:
    from .pipeline import Experiment



def pair_seed(seed: int, pair: int, role: int) -> int:
    """A seed of its own for each pair and role (0 original and methods, 1 Retrain, 2 the control Retrain):
    initialisations vary across pairs, so the Gaussians see that variance and no role shares an init."""
    return int(np.random.default_rng([seed, pair, role, 0x11AA]).integers(2**31))


def capacity(targets: int) -> int:
    """The number of distinct halves of the forget set: more pairs than this would repeat forget sets."""
    return math.comb(targets, targets // 2) if targets >= 2 else 0


def check_capacity(exp: Experiment) -> None:
    """--ulira K above what the forget set allows is refused before anything is written."""
    k = exp.config.evidence.ulira
    for seed in exp.config.seeds:
        targets = len(exp.splits(seed).forget_train)
        if k > capacity(targets):
            raise UserError(f"--ulira {k} is more shadow pairs than the forget set of {targets} samples allows "
                            f"({capacity(targets)} distinct halves): lower --ulira or raise --train-per-class")


def shadow_half(n_train: int, targets: np.ndarray, member: np.ndarray, seed: int, pair: int) -> np.ndarray:
    """Positions in the training set of pair `pair`'s original: half the non-targets and its member targets."""
    others = np.setdiff1d(np.arange(n_train), targets)
    rng = np.random.default_rng([seed, pair, 0x5AAD])
    half = rng.choice(others, len(others) // 2, replace=False)
    return np.sort(np.concatenate([half, targets[member]]))


def add_ulira(exp: Experiment, name: str, seed: int, rows: list[dict]) -> None:
    """Score every method of the run with U-LiRA on model `name` and seed; the figures go into `rows`."""
    started = time.perf_counter()
    cfg, splits = exp.config, exp.splits(seed)
    pairs = cfg.evidence.ulira
    train, targets = splits.train, splits.forget_index
    target_set = train.subset(targets)
    member = balanced_membership(pairs, len(targets), seed)
    labels = target_set.labels.cpu().numpy()
    scores: dict[tuple[str, int | None], list[np.ndarray]] = {}
    retrained: list[np.ndarray] = []
    for pair in range(pairs):
        half = shadow_half(len(train), targets, member[pair], seed, pair)
        kept = half[~np.isin(half, targets)]
        pair_scores = shadow_pair(exp, name, seed, pair, half, kept, targets[member[pair]], target_set, labels)
        retrained.append(pair_scores.pop(("retrain-shadow", None)))
        for key, value in pair_scores.items():
            scores.setdefault(key, []).append(value)
    for row in rows:
        key = (row["method"], row["epochs"])
        if len(scores.get(key, ())) == pairs:
            row.update(ulira(np.stack(scores[key]), np.stack(retrained), member))
            row["ulira_pairs"] = pairs
    exp.timings["ulira"] = exp.timings.get("ulira", 0.0) + time.perf_counter() - started


def shadow_pair(exp: Experiment, name: str, seed: int, pair: int, half: np.ndarray, kept: np.ndarray,
                forgotten: np.ndarray, target_set, labels: np.ndarray) -> dict[tuple[str, int | None], np.ndarray]:
    """The scores of one pair's models on the target examples: cached, or computed through run_method."""
    cfg = exp.config
    args = cfg.model_args.get(name, {})
    key = fingerprint("ulira", 2, name, args, to_dict(cfg)["data"], to_dict(cfg)["pretrain"], to_dict(cfg)["unlearn"],
                      cfg.method_args, seed, pair, cfg.evidence.ulira)
    path = exp.seed_dir(seed) / "ulira" / name / f"pair{pair}" / f"scores-{key}.npz"
    found = load_scores(path) if path.is_file() and exp.verified(f"{name} U-LiRA pair {pair}", [path]) else {}
    if all(any(m == method for m, _ in found) for method in ["retrain-shadow", "original", *cfg.methods]):
        return found
    splits = exp.splits(seed)
    train = splits.train
    original, _ = exp.train_original(name, train.subset(half), pair_seed(seed, pair, 0), f"{name} shadow {pair}")
    spec = get_spec(name, args)

    def fresh():
        return build_model(name, splits.num_classes, splits.image_shape[0], splits.image_shape[1],
                           splits.mean, splits.std, args)

    retain, forget = train.subset(kept), train.subset(forgotten)
    ctx = method_context(cfg, spec.plan, spec.family, fresh, retain, forget, splits.forget_classes or None,
                         flip=exp.flip)

    def score(model) -> np.ndarray:
        return logit_confidence(predict(model, target_set, cfg.eval_batch_size), labels)

    out = {("original", None): score(original)}
    runs = [("retrain-shadow", pair_seed(seed, pair, 1))]
    runs += [(m, pair_seed(seed, pair, 2 if m == "retrain" else 0)) for m in cfg.methods]
    for method, run_seed in runs:
        run = run_method("retrain" if method == "retrain-shadow" else method, original, retain, ctx,
                         seed=run_seed, precision=cfg.precision, channels_last=cfg.channels_last, cache_prefix=cfg.unlearn.cache_prefix,
                         progress=exp.progress)
        exp.training_sec += sum(run.history.epoch_seconds)
        for snap in run.snapshots:
            out[(method, snap.epochs)] = score(snap.model)
    save_scores(path, out)
    return out


def load_scores(path: Path) -> dict[tuple[str, int | None], np.ndarray]:
    """The scores save_scores wrote: (method, epochs or None) -> scores on the target examples."""
    with np.load(path, allow_pickle=False) as data:
        return {(str(m), None if int(e) < 0 else int(e)): data[f"s{i}"]
                for i, (m, e) in enumerate(zip(data["methods"], data["epochs"]))}


def save_scores(path: Path, scores: dict[tuple[str, int | None], np.ndarray]) -> None:
    keys = list(scores)
    arrays = {f"s{i}": scores[k] for i, k in enumerate(keys)}
    arrays["methods"] = np.array([m for m, _ in keys])
    arrays["epochs"] = np.array([-1 if e is None else e for _, e in keys])
    with storage.atomic_path(path, ".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
