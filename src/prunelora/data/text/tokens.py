"""Examples as token tensors on the device: the loss is on the answer's tokens only.

A question/answer pair becomes the prompt, then the answer and the end-of-sequence token. The prompt is the
user's format where they give one (`--prompt-template "{question} "`: the text before the answer, the
question where `{question}` stands), else the tokenizer's chat template with a generation prompt where it has
one (after a conversation's system prompt and earlier turns), else the plain cue "Question: ...\\nAnswer: ".
The prompt's trailing whitespace is tokenized with the answer (" Paris", as a byte-level BPE tokenizes
"Q Paris" at once), so the model is trained and scored on exactly the tokens its own format gives. The labels are -100 on the prompt (and on padding), the token ids
on the answer. Plain text is all answer. Right padding for training and scoring; prompts alone, left padded,
for generation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import UserError
from .examples import Asked, Example

IGNORE = -100


PLAIN_CUE = "Question: {question}\nAnswer: "
QUESTION = "{question}"


def check_template(template: str | None) -> None:
    """A prompt template holds `{question}` exactly once (any other text is kept as it is, braces too)."""
    if template is not None and template.count(QUESTION) != 1:
        raise UserError(f"--prompt-template {template!r}: give the text before the answer with {QUESTION} once where "
                        'the question goes, e.g. --prompt-template "{question} " or "Q: {question}\\nA:"')


def format_name(tokenizer, template: str | None) -> str:
    """How prompts are written, for results and records: the user's template, the chat template, or the cue."""
    if template is not None:
        return template
    return "the tokenizer's chat template" if getattr(tokenizer, "chat_template", None) else PLAIN_CUE


def prompt_text(tokenizer, question: str, template: str | None = None) -> str:
    """The text before the answer: the user's template, else the chat template's user turn (after a
    conversation's turns before it, examples.Asked) and generation prompt, else the plain cue ("" for plain text).
    A template or the cue writes the question alone: a conversation's turns are only the chat template's
    (check_conversations refuses a run whose own format would drop them)."""
    if question == "":
        return ""
    if template is not None:
        return template.replace(QUESTION, str(question))
    if getattr(tokenizer, "chat_template", None):
        turns = question.messages() if isinstance(question, Asked) else [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return PLAIN_CUE.replace(QUESTION, str(question))


def check_conversations(tokenizer, examples: list[Example], template: str | None) -> None:
    """Conversations whose question has turns before it (a system prompt, earlier exchanges) are written by the
    tokenizer's chat template: a run whose format is a --prompt-template or the plain cue would drop those
    turns, so it is refused before anything is written."""
    first = next((ex for ex in examples if isinstance(ex.prompt, Asked)), None)
    if first is None:
        return
    if template is not None:
        raise UserError(f"example '{first.id}' is a conversation with {len(first.prompt.before)} message(s) before "
                        "its question, which --prompt-template cannot write: leave it out (the tokenizer's chat "
                        "template writes them), or give the examples as question/answer pairs")
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"example '{first.id}' is a conversation with {len(first.prompt.before)} message(s) before "
                        "its question, and the tokenizer has no chat template to write them: save the model's "
                        "tokenizer with its chat_template, or give the examples as question/answer pairs")


def _split_prompt(tokenizer, question: str, template: str | None) -> tuple[str, str]:
    """(the prompt without its trailing whitespace, that whitespace: the start of the answer's text)."""
    text = prompt_text(tokenizer, question, template)
    core = text.rstrip()
    return core, text[len(core):]


def _prompt_ids(tokenizer, question: str, template: str | None = None) -> list[int]:
    core, _ = _split_prompt(tokenizer, question, template)
    templated = bool(question) and template is None and bool(getattr(tokenizer, "chat_template", None))
    ids = tokenizer(core, add_special_tokens=not templated)["input_ids"] if core else []
    if not ids and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id]  # plain text: the model predicts every token after the first
    return list(ids)


def _answer_ids(tokenizer, answer: str, lead: str) -> list[int]:
    ids = tokenizer(lead + answer, add_special_tokens=False)["input_ids"]
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
                 device: torch.device, template: str | None = None) -> TokenSet:
    """(prompt, answer) pairs as a TokenSet; a pair longer than max_length tokens is refused."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise UserError("the tokenizer has neither a pad nor an end-of-sequence token: give it one "
                        "(tokenizer.pad_token = ...) and save it with the model")
    rows, labels = [], []
    for ident, (question, answer) in zip(ids, pairs):
        prompt = _prompt_ids(tokenizer, question, template)
        reply = _answer_ids(tokenizer, answer, _split_prompt(tokenizer, question, template)[1])
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


def encode(tokenizer, examples: list[Example], max_length: int, device: torch.device,
           template: str | None = None) -> TokenSet:
    """The examples in the run's own format (`template`): conversations it cannot write are refused."""
    check_conversations(tokenizer, examples, template)
    return encode_pairs(tokenizer, [ex.content() for ex in examples], [ex.id for ex in examples], max_length, device,
                        template)


def prompts(tokenizer, examples: list[Example], device: torch.device,
            template: str | None = None) -> dict[str, torch.Tensor]:
    """The examples' prompts alone, left-padded (what greedy generation continues)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [_prompt_ids(tokenizer, ex.prompt, template) for ex in examples]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
