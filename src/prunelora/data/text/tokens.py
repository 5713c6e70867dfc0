"""Examples as token tensors on the device: the loss is on the answer's tokens only.

A question/answer pair becomes the prompt (the tokenizer's chat template with a generation prompt
where it has one, else "Question: ...\\nAnswer:") followed by the answer and the end-of-sequence
token; the labels are -100 on the prompt (and on padding), the token ids on the answer. Plain text is
all answer. Right padding for training and scoring; prompts alone, left padded, for generation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import UserError
from .examples import Example

IGNORE = -100


def prompt_text(tokenizer, question: str) -> str:
    """The text before the answer: the chat template's user turn and generation prompt, or a plain cue."""
    if question == "":
        return ""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
    return f"Question: {question}\nAnswer:"


def _prompt_ids(tokenizer, question: str) -> list[int]:
    text = prompt_text(tokenizer, question)
    templated = bool(question) and bool(getattr(tokenizer, "chat_template", None))
    ids = tokenizer(text, add_special_tokens=not templated)["input_ids"] if text else []
    if not ids and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id]  # plain text: the model predicts every token after the first
    return list(ids)


def _answer_ids(tokenizer, answer: str, after_prompt: bool) -> list[int]:
    ids = tokenizer((" " if after_prompt else "") + answer, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return list(ids) + ([eos] if eos is not None else [])


@dataclass
class TokenSet:
    """Examples encoded for training and scoring (rows right-padded to the longest)."""

    ids: list[str]
    input_ids: torch.Tensor  # [n, T]
    attention_mask: torch.Tensor  # [n, T]
    labels: torch.Tensor  # [n, T]: token ids on the answer, IGNORE elsewhere

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rows `index`, trimmed to their longest sequence (padding is never computed), and their positions."""
        mask = self.attention_mask[index]
        width = int(mask.sum(1).max()) if len(index) else 1
        return {"input_ids": self.input_ids[index, :width], "attention_mask": mask[:, :width],
                "labels": self.labels[index, :width], "index": index}

    def to(self, device: torch.device) -> TokenSet:
        return TokenSet(self.ids, self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def encode_pairs(tokenizer, pairs: list[tuple[str, str]], ids: list[str], max_length: int,
                 device: torch.device) -> TokenSet:
    """(prompt, answer) pairs as a TokenSet; a pair longer than max_length tokens is refused."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise UserError("the tokenizer has neither a pad nor an end-of-sequence token: give it one "
                        "(tokenizer.pad_token = ...) and save it with the model")
    rows, labels = [], []
    for ident, (question, answer) in zip(ids, pairs):
        prompt = _prompt_ids(tokenizer, question)
        reply = _answer_ids(tokenizer, answer, bool(question))
        if len(prompt) + len(reply) > max_length:
            raise UserError(f"example '{ident}' is {len(prompt) + len(reply)} tokens, longer than --max-length "
                            f"{max_length}: raise --max-length (up to the model's context) or shorten it")
        rows.append(prompt + reply)
        labels.append([IGNORE] * len(prompt) + reply)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    target = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (row, label) in enumerate(zip(rows, labels)):
        input_ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
        target[i, :len(row)] = torch.tensor(label)
    return TokenSet(list(ids), input_ids, mask, target).to(device)


def encode(tokenizer, examples: list[Example], max_length: int, device: torch.device) -> TokenSet:
    return encode_pairs(tokenizer, [ex.content() for ex in examples], [ex.id for ex in examples], max_length, device)


def prompts(tokenizer, examples: list[Example], device: torch.device) -> dict[str, torch.Tensor]:
    """The examples' prompts alone, left-padded (what greedy generation continues)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [_prompt_ids(tokenizer, ex.prompt) for ex in examples]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
