"""The field's language-model unlearning metrics, as plain functions of numbers the model already gave.

Nothing here runs a model: the caller computes per-token log-probabilities and average NLLs, and these
functions turn them into the numbers papers report, so each definition can be checked by hand.

Sources: TOFU (Maini et al. 2024, github.com/locuslab/tofu) for ROUGE-L, probability, truth ratio, forget
quality and model utility; open-unlearning (github.com/locuslab/open-unlearning, commit
d3d7cf9e6b3c125d16687d4232680d8d83548f1a) for ROUGE-L and the membership attacks as the field runs them; MUSE
(github.com/swj0419/muse_bench, commit fcd6651da8bcf34744fb9a1cc69bb856ab3eb277) for PrivLeak; Min-K% Prob
(Shi et al. 2024); Min-K%++ (Zhang et al. 2024); the zlib ratio (Carlini et al. 2021).
"""
from __future__ import annotations

import functools
import math
import zlib

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from ...errors import UserError

MIA_SCORES: dict[str, str] = {
    "loss": "negative average token NLL of the text (Yeom et al. 2018's loss attack)",
    "zlib": "negative ratio of the text's NLL to its zlib-compressed length in bytes (Carlini et al. 2021)",
    "min_k": "mean of the lowest k% token log-probabilities (Min-K% Prob, Shi et al. 2024)",
    "min_k_plus_plus": "mean of the lowest k% token log-probs standardised by the model's own next-token "
                       "distribution (Min-K%++, Zhang et al. 2024)",
}

_VARIANCE_FLOOR = 1e-6  # open-unlearning's min_k_plus_plus.py clamps the variance, not the std, at 1e-6


# --- generation and probability (TOFU) -------------------------------------------------------------------------------


@functools.cache
def _rouge_scorer():
    """rouge_score's RougeScorer(["rougeL"], use_stemmer=True), built once (its Porter stemmer is slow to build)."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise UserError("ROUGE-L needs the rouge-score package: pip install 'rouge-score>=0.1.2,<0.2' "
                        "(or pip install 'prunelora[hf]')") from None
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(prediction: str, reference: str) -> float:
    """ROUGE-L recall: the share of the reference's tokens the prediction reproduces in order.

    Exactly TOFU's and open-unlearning's score: rouge_score's RougeScorer(["rougeL"], use_stemmer=True)
    .score(reference, prediction).recall (locuslab/tofu evaluate_util.py eval_rouge_recall, commit bdc209e;
    open-unlearning src/evals/metrics/utils.py eval_text_similarity, commit d3d7cf9). Its tokenizer lowercases,
    turns every non-[a-z0-9] character into a space and Porter-stems the words longer than 3 characters, so
    "worked as engineers" reproduces 3 of the 4 tokens of "works as an engineer" (work, as, engin); recall is
    the longest common subsequence over the reference's token count, 0.0 when either side has no token.
    """
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].recall)


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


def zlib_score(avg_nll: ArrayLike, texts: list[str]) -> np.ndarray:
    """-(average token NLL / zlib entropy), zlib entropy = len(zlib.compress(text.encode("utf-8"))) (Carlini et
    al. 2021), as open-unlearning's ZLIBAttack (src/evals/metrics/mia/zlib.py, commit d3d7cf9: avg_loss over every
    answer token, the end-of-sequence token included, over the compressed length of the answer tokens decoded
    with skip_special_tokens=True; the sign flipped so that higher means member).

    Dividing by the compressed length discounts text that is low-loss only because it is repetitive or generic.
    """
    nll = np.asarray(avg_nll, dtype=np.float64).ravel()
    if nll.size != len(texts):
        raise ValueError(f"zlib_score: {nll.size} NLLs but {len(texts)} texts")
    entropy = np.array([len(zlib.compress(t.encode("utf-8"))) for t in texts], dtype=np.float64)
    return -(nll / entropy)


def _lowest_k_mean(values: np.ndarray, k: float) -> float:
    """Mean of the lowest max(1, int(T * k)) of the T values, 0.0 when there are none (open-unlearning's MinKProbAttack:
    num_k = max(1, int(len(lp) * k)), and a score of 0 for an example with no token; int() truncates, so 0.3 of 5
    tokens is 1 token, and T * k is taken in floating point as the reference does)."""
    if values.size == 0:
        return 0.0
    n = max(1, int(values.size * k))
    return float(np.mean(np.sort(values)[:n]))


def _check_k(k: float) -> None:
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be in (0, 1], got {k}")


def min_k_score(token_logprobs: list[np.ndarray], k: float = 0.4) -> np.ndarray:
    """Min-K% Prob (Shi et al. 2024): mean of the lowest max(1, int(T * k)) token log-probs per example.

    As open-unlearning's MinKProbAttack (src/evals/metrics/mia/min_k.py, commit d3d7cf9; k = 0.4 in its
    tofu_metrics and muse_metrics configs, MUSE's Min-40%), with the sign flipped (higher = member): the caller
    passes the answer tokens with the end-of-sequence token dropped (tokenwise_logprobs in
    src/evals/metrics/utils.py: "-1 to ignore eos prediction"), so T counts the tokens after the drop. An
    example with no token left scores 0.0, as the reference's. Unseen text tends to contain a few very unlikely
    tokens; seen text rarely does.
    """
    _check_k(k)
    return np.array([_lowest_k_mean(np.asarray(lp, dtype=np.float64).ravel(), k) for lp in token_logprobs],
                    dtype=np.float64)


def min_k_plus_plus_score(token_logprobs: list[np.ndarray], token_mu: list[np.ndarray],
                          token_sigma: list[np.ndarray], k: float = 0.4) -> np.ndarray:
    """Min-K%++ (Zhang et al. 2024): Min-K% over z = (log p - mu) / sqrt(max(sigma^2, 1e-6)).

    mu and sigma are the mean and std of log p over the vocabulary under the model's own next-token distribution
    at each position: standardising asks whether the token is a local mode, which training makes it. As
    open-unlearning's MinKPlusPlusAttack (src/evals/metrics/mia/min_k_plus_plus.py, commit d3d7cf9), which clamps
    the variance at 1e-6 before the square root (the std at 1e-3), on the same tokens as min_k_score (the
    end-of-sequence token dropped), with the sign flipped (higher = member).
    """
    _check_k(k)
    if not len(token_logprobs) == len(token_mu) == len(token_sigma):
        raise ValueError(f"min_k_plus_plus_score: {len(token_logprobs)} log-prob arrays, {len(token_mu)} mu "
                         f"arrays, {len(token_sigma)} sigma arrays")
    out = []
    for i, (lp, mu, sigma) in enumerate(zip(token_logprobs, token_mu, token_sigma)):
        lp_a = np.asarray(lp, dtype=np.float64).ravel()
        mu_a = np.asarray(mu, dtype=np.float64).ravel()
        sigma_a = np.asarray(sigma, dtype=np.float64).ravel()
        if mu_a.shape != lp_a.shape or sigma_a.shape != lp_a.shape:
            raise ValueError(f"example {i}: {lp_a.size} log-probs, {mu_a.size} mu, {sigma_a.size} sigma")
        z = (lp_a - mu_a) / np.sqrt(np.maximum(sigma_a * sigma_a, _VARIANCE_FLOOR))
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
    """MUSE's PrivLeak in percent, from prunelora's AUCs (forget set = members, the positive class; see attack_auc).

    MUSE (swj0419/muse_bench eval.py and metrics/privleak.py, commit fcd6651; open-unlearning
    src/evals/metrics/privacy.py privleak, commit d3d7cf9) orients its AUC the other way: forget = non-members,
    holdout = members, so its AUC is 1 - ours, and PrivLeak = (AUC'_unlearned - AUC'_retrain) / AUC'_retrain x 100
    with AUC' = 1 - AUC. In prunelora's orientation:

        PrivLeak = (AUC_retrain - AUC_unlearned) / (1 - AUC_retrain) x 100.

    0 = leaks like Retrain. Negative = the forget set still looks more like members than it does to Retrain
    (under-unlearning: a Finetune-like model, AUC 0.97 against Retrain's 0.50, gives -94). Positive = it looks
    less like members than to Retrain (over-unlearning, itself a tell). Undefined (ValueError) when Retrain's
    AUC is 1 (MUSE's denominator 0; open-unlearning adds 1e-10 and reports about -1e12).
    """
    if not 0.0 <= retrain_auc < 1.0:
        raise ValueError(f"priv_leak: retrain_auc must be in [0, 1), got {retrain_auc} (at 1 MUSE's PrivLeak "
                         "divides by zero)")
    return (retrain_auc - unlearned_auc) / (1.0 - retrain_auc) * 100.0
