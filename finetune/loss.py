"""The training loss, written by hand because the libraries do it badly here; and the schedule.

Gemma's vocabulary has 262k entries, so the output layer dominates a step; TRL and
`model(labels=...)` compute logits at every position, prompt included. We run the model's body,
keep the hidden states at the answer positions only, and apply the output layer (and Gemma 2's
final logit softcap) to those: the same loss, a fraction of the work. With --answer-vocab (the
default) the output layer's rows are only those the decoder chooses among for that prompt
(`model.llm.decoding.vocab`): the softmax trained is the one decoded.

The output layer's shapes are padded (answer positions to a multiple of 64, rows to one of
256, the padding scored and thrown away): with a new (positions x rows) shape every step the
CPU kernels' per-shape state kept growing (that matmul and its backward alone, over 800 steps
of such shapes: 0.59 -> 1.71 GB; padded, flat at 0.75 GB; bench/README.md has the real loop).
"""

from __future__ import annotations

import math
from itertools import count, islice

import torch
import torch.nn.functional as F
from torch import nn

from finetune.config import TrainConfig
from finetune.data import IGNORE, Tokenized
from model.llm.decoding.vocab import AnswerVocab
from model.llm.weights.registry import causal_lm

POSITION_MULTIPLE = 64  # answer positions scored a step, padded up to a multiple of this
ROW_MULTIPLE = 256  # output rows of a step (--answer-vocab), padded likewise


class AnswerLoss(nn.Module):
    """Cross-entropy on the answer tokens only, with logits computed only there.

    Identical to `model(input_ids, attention_mask, labels).loss` (tested), but the 262k-wide
    output layer runs on the answer positions (~10 % of a text-to-SQL example), not all.
    Returns the summed loss and the number of answer tokens, so gradient accumulation can
    average over every token of the step. A module so that DDP can wrap it.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
        rows: torch.Tensor | None = None, allowed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`rows` (sorted token ids) and `allowed` (a row of booleans an example over `rows`):
        the softmax over the tokens the decoder may choose for each example (`answer_rows`),
        as it decodes; None: over the whole vocabulary."""
        lm = causal_lm(self.model)
        hidden = lm.model(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE  # position t predicts token t+1
        head = lm.get_output_embeddings()
        wanted, states = targets[keep], hidden[:, :-1][keep]
        if rows is not None:
            wanted = torch.searchsorted(rows, wanted)  # every answer token is a row (answer_rows)
        extra = -len(wanted) % POSITION_MULTIPLE  # zero states whose loss is ignored
        states = torch.cat([states, states.new_zeros(extra, states.shape[-1])])
        wanted = torch.cat([wanted, wanted.new_full((extra,), IGNORE)])
        if rows is None:
            logits = head(states).float()
        else:  # the head is frozen: its rows are a constant, no graph to keep
            logits = F.linear(states, head.weight.index_select(0, rows)).float()
        if rows is not None and allowed is not None:
            example = torch.cat([keep.nonzero()[:, 0], keep.new_zeros(extra, dtype=torch.long)])
            logits = logits.masked_fill(~allowed[example], float("-inf"))
        logits = softcapped(lm, logits)
        loss_sum = F.cross_entropy(logits, wanted, ignore_index=IGNORE, reduction="sum")
        return loss_sum, keep.sum()


def softcapped(lm: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """The logits as the model scores them: Gemma 2's final soft cap, where the config has one."""
    cap = getattr(lm.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def answer_rows(items: list[Tokenized], vocab: AnswerVocab,
                stop_ids: set[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The output rows a batch's answers are scored over: for each example what the decoder
    allows after its prompt (`AnswerVocab.for_prompt`, the stop ids included) plus the
    example's own answer tokens, so a token outside the vocabulary (none, when the vocabulary
    is this data's) is still learnt. Returns the sorted union, padded to a multiple of
    ROW_MULTIPLE with ids no example allows, and an (examples, rows) mask."""
    per_example = []
    for t in items:
        prompt_ids = [i for i, label in zip(t.input_ids, t.labels, strict=True) if label == IGNORE]
        answer = [i for i in t.labels if i != IGNORE]
        per_example.append(set(vocab.for_prompt(t.prompt, prompt_ids, also=stop_ids)) |
                           set(answer))
    ids = set().union(*per_example)
    padding = islice((i for i in count() if i not in ids), -len(ids) % ROW_MULTIPLE)
    rows = torch.tensor(sorted(ids.union(padding)), dtype=torch.long)
    allowed = torch.zeros((len(items), len(rows)), dtype=torch.bool)
    for k, ids in enumerate(per_example):
        allowed[k] = torch.isin(rows, torch.tensor(sorted(ids), dtype=torch.long))
    return rows, allowed


def get_lr(step: int, cfg: TrainConfig, total: int) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr (a pure function of step, so
    the schedule's state is the step number)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))
