"""Tiny random-initialised causal LMs of each family, built from a config (nothing downloaded), and the small people
benchmark with its word tokenizer: shared by the causal-LM tests of several folders.

`people` and `tokenizer` are pytest fixtures: a folder's conftest.py (or a test module) imports them to make them
visible there (tests/conftest.py stays free of causal-LM fixtures); `tiny`, FAMILIES and SIZES are plain helpers.
"""
from __future__ import annotations

import pytest
import torch

from prunelora.data.text.synthetic import BenchmarkSpec, make_people_benchmark, word_tokenizer
from prunelora.models.causal_lm.loading import tiny_model

FAMILIES = ("llama", "gpt2", "qwen2", "phi")
SIZES = {"hidden": 32, "layers": 2, "heads": 4, "intermediate": 64, "max_positions": 64}


@pytest.fixture(scope="session")
def people():
    train, holdout = make_people_benchmark(BenchmarkSpec(people=6, questions=2, holdout_people=2, perturbed=2))
    return train, holdout


@pytest.fixture(scope="session")
def tokenizer(people):
    train, holdout = people
    cue = {"question": "Question : Answer :", "answer": "", "paraphrased_answer": "", "perturbed_answer": []}
    return word_tokenizer(train + holdout + [cue])


def tiny(family: str, tokenizer=None, seed: int = 0):
    torch.manual_seed(seed)
    vocab = len(tokenizer) if tokenizer is not None else 50
    return tiny_model(family, vocab, seed, tokenizer, **SIZES).eval()


@pytest.fixture()
def user_model(tmp_path, tokenizer):
    """A tiny Llama and its tokenizer saved as a user's folder (`--model hf:FOLDER`)."""
    folder = tmp_path / "lm"
    tiny("llama", tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
