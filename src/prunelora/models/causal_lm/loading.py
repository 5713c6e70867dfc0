"""Causal LMs: the user's (hf:DIR, a save_pretrained folder with its tokenizer), or a small one built from a
config for the embedded benchmark and the tests (random initialisation, nothing downloaded)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ...errors import UserError


def quiet_transformers() -> None:
    """transformers' own progress bars (loading and writing weights) off: prunelora's bars say what runs, and a
    pruned model is saved and reloaded once per method to prove its config right."""
    import transformers as T

    T.utils.logging.disable_progress_bar()


def tiny_config(family: str, vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 4,
                intermediate: int = 128, max_positions: int = 256, tokenizer=None):
    """A transformers config of `family` at the given size; special token ids from the tokenizer."""
    import transformers as T

    special = {}
    if tokenizer is not None:
        special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                   "pad_token_id": tokenizer.pad_token_id}
    common = {"vocab_size": vocab_size, "hidden_size": hidden, "num_hidden_layers": layers,
              "num_attention_heads": heads, "intermediate_size": intermediate,
              "max_position_embeddings": max_positions, **special}
    if family == "llama":
        return T.LlamaConfig(**common, num_key_value_heads=max(1, heads // 2), head_dim=hidden // heads,
                             tie_word_embeddings=False)
    if family == "mistral":
        return T.MistralConfig(**common, num_key_value_heads=max(1, heads // 2), head_dim=hidden // heads)
    if family == "qwen2":
        return T.Qwen2Config(**common, num_key_value_heads=max(1, heads // 2))
    if family == "phi":
        return T.PhiConfig(**common)
    if family == "gpt2":
        return T.GPT2Config(vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=heads, n_inner=intermediate,
                            n_positions=max_positions, **special)
    raise UserError(f"unknown model family '{family}' (choose llama, mistral, qwen2, phi or gpt2)")


def tiny_model(family: str, vocab_size: int, seed: int, tokenizer=None, **sizes) -> nn.Module:
    """A randomly initialised causal LM of `family`; the same seed gives the same weights."""
    import transformers as T

    torch.manual_seed(seed)
    return T.AutoModelForCausalLM.from_config(tiny_config(family, vocab_size, tokenizer=tokenizer, **sizes))


def is_causal_lm(model: nn.Module) -> bool:
    """A transformers model that generates text (a *ForCausalLM or *LMHeadModel)."""
    return hasattr(model, "generate") and hasattr(model, "get_output_embeddings") and \
        model.get_output_embeddings() is not None and not getattr(model.config, "is_encoder_decoder", False)


def load_causal_lm(spec: str, device: torch.device):
    """(model, tokenizer) of hf:DIR; one line for what is not a causal LM with a tokenizer."""
    import transformers as T

    if not spec.startswith("hf:"):
        raise UserError(f"--model {spec}: give hf:DIR, a folder written by save_pretrained (model and tokenizer)")
    folder = Path(spec[3:])
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"--model {spec}: {config_file} not found (give a folder written by save_pretrained)")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError):
        raise UserError(f"--model {spec}: {config_file} is not a transformers config (not JSON)") from None
    architectures = config.get("architectures") or []
    if architectures and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        raise UserError(f"--model {spec} is a {architectures[0]}, not a causal language model: give a "
                        "*ForCausalLM folder (the image task takes the others: leave out --task causal-lm)")
    try:
        model = T.AutoModelForCausalLM.from_pretrained(str(folder))
    except (ValueError, OSError, KeyError) as exc:
        raise UserError(f"--model {spec} cannot be loaded as a causal LM: {str(exc).splitlines()[0]}") from None
    try:
        tokenizer = T.AutoTokenizer.from_pretrained(str(folder))
    except (ValueError, OSError, TypeError) as exc:
        raise UserError(f"--model {spec} has no tokenizer ({str(exc).splitlines()[0]}): save the tokenizer in the "
                        "same folder (tokenizer.save_pretrained(DIR))") from None
    if not is_causal_lm(model):
        raise UserError(f"--model {spec} is not a causal language model")
    return model.to(device), tokenizer


def weight_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The weights' dtype: bf16 where asked on CUDA (weights and steps in bf16, losses in fp32), else fp32."""
    if precision == "bf16":
        if device.type != "cuda":
            raise UserError("--precision bf16 runs on CUDA only: give --device cuda, or leave out --precision")
        return torch.bfloat16
    return torch.get_default_dtype()
