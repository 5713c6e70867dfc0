"""The causal-LM task: unlearning named facts from a Hugging Face causal language model (issue 23).

Question/answer (or plain-text) examples in, a forget set named by id or by example, PruneLoRA and the
field's LLM objectives (gradient ascent, gradient difference, NPO, SimNPO, RMU, retain finetune, Retrain)
through the one training loop (train.fit), and the field's LLM metrics (TOFU's forget quality and model
utility, ROUGE-L, truth ratio, membership attacks, MUSE's PrivLeak). `prunelora ... --task causal-lm` on
the command line; `unlearn_lm` from Python.
"""
from .api import LMResult, unlearn_lm

__all__ = ["LMResult", "unlearn_lm"]
