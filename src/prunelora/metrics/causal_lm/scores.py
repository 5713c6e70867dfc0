"""The field's language-model unlearning metrics, as plain functions of numbers the model already gave.

Nothing here runs a model: the caller computes per-token log-probabilities and average NLLs, and these
functions turn them into the numbers papers report, so each definition can be checked by hand.

Sources: TOFU (Maini et al. 2024, github.com/locuslab/tofu) for ROUGE-L, probability, truth ratio, forget
quality and model utility; open-unlearning (github.com/locuslab/open-unlearning) for the membership attacks as
the field runs them; MUSE (Shi et al. 2024) for PrivLeak; Min-K% Prob (Shi et al. 2024); Min-K%++ (Zhang et
al. 2024); the zlib ratio (Carlini et al. 2021).
"""
from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

MIA_SCORES: dict[str, str] = {
    "loss": "negative average token NLL of the text (Yeom et al. 2018's loss attack)",
    "zlib": "negative ratio of the text's NLL to its zlib-compressed length in bytes (Carlini et al. 2021)",
    "min_k": "mean of the lowest k% token log-probabilities (Min-K% Prob, Shi et al. 2024)",
    "min_k_plus_plus": "mean of the lowest k% token log-probs standardised by the model's own next-token "
                       "distribution (Min-K%++, Zhang et al. 2024)",
}

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_SIGMA_FLOOR = 1e-6


# --- generation and probability (TOFU) -------------------------------------------------------------------------------


def _rouge_tokens(text: str) -> list[str]:
    """rouge_score's default tokenizer without stemming: lowercase, non-[a-z0-9] to spaces, split."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence length by the O(len(a) * len(b)) DP, one row at a time."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l_recall(prediction: str, reference: str) -> float:
    """ROUGE-L recall: the share of the reference's tokens the prediction reproduces in order.

    TOFU reports rouge_score's rougeL recall (no stemming), so a generation that states the answer among other
    words still scores 1; 0.0 when the reference has no tokens.
    """
    ref = _rouge_tokens(reference)
    if not ref:
        return 0.0
    return _lcs_length(_rouge_tokens(prediction), ref) / len(ref)


def answer_probability(avg_nll: ArrayLike) -> np.ndarray:
    """exp(-average token NLL) per example: TOFU's length-normalised answer probability."""
    return np.exp(-np.asarray(avg_nll, dtype=np.float64))


def truth_ratio(paraphrased_avg_nll: ArrayLike, perturbed_avg_nll: ArrayLike) -> np.ndarray:
    """Per-example R = P(perturbed) / P(paraphrased) = exp(paraphrased - mean_k(perturbed)) (TOFU).

    The perturbed answers' average NLLs are averaged over the k answers before exponentiating, as TOFU does, so
    R is a ratio of geometric-mean probabilities: R < 1 prefers the true answer, R ~ 1 cannot tell them apart.
    paraphrased_avg_nll has shape [n], perturbed_avg_nll shape [n, k] with k >= 1.
    """
    para = np.asarray(paraphrased_avg_nll, dtype=np.float64)
    pert = np.asarray(perturbed_avg_nll, dtype=np.float64)
    if para.ndim != 1:
        raise ValueError(f"paraphrased_avg_nll must have shape [n], got {para.shape}")
    if pert.ndim != 2 or pert.shape[0] != para.shape[0] or pert.shape[1] < 1:
        raise ValueError(f"perturbed_avg_nll must have shape [n, k] with n = {para.shape[0]} (the paraphrased "
                         f"count) and k >= 1, got {pert.shape}")
    return np.exp(para - pert.mean(axis=1))


def _ratios(ratios: ArrayLike) -> np.ndarray:
    r = np.asarray(ratios, dtype=np.float64).ravel()
    if r.size == 0:
        raise ValueError("no truth ratios given")
    if np.isnan(r).any():
        raise ValueError("truth ratios contain NaN")
    return r


def truth_ratio_forget_stat(ratios: ArrayLike) -> float:
    """mean(min(R, 1/R)): TOFU's forget-set truth-ratio score (1 = cannot tell true from false answers)."""
    r = _ratios(ratios)
    with np.errstate(divide="ignore"):
        return float(np.mean(np.minimum(r, 1.0 / r)))


def truth_ratio_retain_stat(ratios: ArrayLike) -> float:
    """mean(max(0, 1 - R)): TOFU's retain-side truth-ratio score (1 = strongly prefers the true answer)."""
    r = _ratios(ratios)
    return float(np.mean(np.maximum(0.0, 1.0 - r)))


def forget_quality(unlearned_ratios: ArrayLike, retrain_ratios: ArrayLike) -> float:
    """Two-sample KS test p-value of the forget-set truth ratios, unlearned model vs Retrain (TOFU).

    A high p-value means the unlearned model's truth ratios cannot be told apart from those of a model never
    trained on the forget set; TOFU calls it forget quality and plots it on a log scale.
    """
    u = np.asarray(unlearned_ratios, dtype=np.float64).ravel()
    r = np.asarray(retrain_ratios, dtype=np.float64).ravel()
    if u.size == 0 or r.size == 0:
        raise ValueError(f"forget_quality needs truth ratios on both sides, got {u.size} unlearned and "
                         f"{r.size} retrain")
    if np.isnan(u).any() or np.isnan(r).any():
        raise ValueError("forget_quality: truth ratios contain NaN")
    return float(ks_2samp(u, r).pvalue)


def model_utility(values: dict[str, float]) -> float:
    """Harmonic mean of the retain-side measures (TOFU: probability, ROUGE-L and truth-ratio score per split).

    The harmonic mean lets one collapsed measure drag utility down, which is why TOFU uses it; 0.0 when any
    measure is <= 0.
    """
    if not values:
        raise ValueError("model_utility needs at least one measure")
    v = np.asarray(list(values.values()), dtype=np.float64)
    if np.isnan(v).any():
        bad = sorted(k for k, x in values.items() if math.isnan(float(x)))
        raise ValueError(f"model_utility: NaN measures {bad}")
    if (v <= 0).any():
        return 0.0
    return float(v.size / np.sum(1.0 / v))


# --- membership attacks (open-unlearning's mia_*; higher score = more likely a member) ----------------------------


def loss_score(avg_nll: ArrayLike) -> np.ndarray:
    """-average token NLL: text the model was trained on has lower loss (the LOSS attack)."""
    return -np.asarray(avg_nll, dtype=np.float64)


def zlib_score(total_nll: ArrayLike, texts: list[str]) -> np.ndarray:
    """-(NLL / zlib entropy), zlib entropy = len(zlib.compress(text.encode("utf-8"))) (Carlini et al. 2021).

    Dividing by the compressed length discounts text that is low-loss only because it is repetitive or generic.
    """
    nll = np.asarray(total_nll, dtype=np.float64).ravel()
    if nll.size != len(texts):
        raise ValueError(f"zlib_score: {nll.size} NLLs but {len(texts)} texts")
    entropy = np.array([len(zlib.compress(t.encode("utf-8"))) for t in texts], dtype=np.float64)
    return -(nll / entropy)


def _lowest_k_mean(values: np.ndarray, k: float) -> float:
    """Mean of the lowest ceil(k * T) values (at least one); the epsilon keeps 0.28 * 25 (7.000000000000001) at 7."""
    n = max(1, math.ceil(k * values.size - 1e-9))
    return float(np.mean(np.sort(values)[:n]))


def _check_k(k: float) -> None:
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be in (0, 1], got {k}")


def _token_array(x: ArrayLike, what: str, i: int) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{what}[{i}] has no tokens")
    return a


def min_k_score(token_logprobs: list[np.ndarray], k: float = 0.4) -> np.ndarray:
    """Min-K% Prob (Shi et al. 2024): mean of the lowest ceil(k * T) token log-probs per example.

    Unseen text tends to contain a few very unlikely tokens; seen text rarely does. open-unlearning's default
    is k = 0.4.
    """
    _check_k(k)
    return np.array([_lowest_k_mean(_token_array(lp, "token_logprobs", i), k)
                     for i, lp in enumerate(token_logprobs)], dtype=np.float64)


def min_k_plus_plus_score(token_logprobs: list[np.ndarray], token_mu: list[np.ndarray],
                          token_sigma: list[np.ndarray], k: float = 0.4) -> np.ndarray:
    """Min-K%++ (Zhang et al. 2024): Min-K% over z = (log p - mu) / sigma, sigma clipped below at 1e-6.

    mu and sigma are the mean and std of log p over the vocabulary under the model's own next-token distribution
    at each position: standardising asks whether the token is a local mode, which training makes it.
    """
    _check_k(k)
    if not len(token_logprobs) == len(token_mu) == len(token_sigma):
        raise ValueError(f"min_k_plus_plus_score: {len(token_logprobs)} log-prob arrays, {len(token_mu)} mu "
                         f"arrays, {len(token_sigma)} sigma arrays")
    out = []
    for i, (lp, mu, sigma) in enumerate(zip(token_logprobs, token_mu, token_sigma)):
        lp_a = _token_array(lp, "token_logprobs", i)
        mu_a = np.asarray(mu, dtype=np.float64).ravel()
        sigma_a = np.asarray(sigma, dtype=np.float64).ravel()
        if mu_a.shape != lp_a.shape or sigma_a.shape != lp_a.shape:
            raise ValueError(f"example {i}: {lp_a.size} log-probs, {mu_a.size} mu, {sigma_a.size} sigma")
        z = (lp_a - mu_a) / np.maximum(sigma_a, _SIGMA_FLOOR)
        out.append(_lowest_k_mean(z, k))
    return np.array(out, dtype=np.float64)


def attack_auc(member_scores: ArrayLike, nonmember_scores: ArrayLike) -> float:
    """ROC AUC of an attack score with members as the positive class (0.5 = the attack cannot tell them apart)."""
    m = np.asarray(member_scores, dtype=np.float64).ravel()
    n = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    if m.size == 0 or n.size == 0:
        raise ValueError(f"attack_auc needs scores on both sides, got {m.size} members and {n.size} non-members")
    if not (np.isfinite(m).all() and np.isfinite(n).all()):
        raise ValueError("attack_auc: scores must be finite")
    labels = np.concatenate([np.ones(m.size), np.zeros(n.size)])
    return float(roc_auc_score(labels, np.concatenate([m, n])))


def priv_leak(unlearned_auc: float, retrain_auc: float) -> float:
    """MUSE's PrivLeak in percent: (AUC_unlearned - AUC_retrain) / AUC_retrain * 100.

    0 = leaks like Retrain; positive = forget set still looks like members (under-unlearned); negative = looks
    less like members than Retrain would (over-unlearned, itself a tell).
    """
    if retrain_auc <= 0:
        raise ValueError(f"priv_leak: retrain_auc must be > 0, got {retrain_auc}")
    return (unlearned_auc - retrain_auc) / retrain_auc * 100.0
