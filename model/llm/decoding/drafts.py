"""Guesses of an answer's next tokens, for the model to check several at a time.

SQL answers repeat themselves: `AS T2 ON T1.`, `) FROM`, `GROUP BY T1.`. Counting which
token most often followed each run of one to three tokens in the training answers gives a
table that guesses a few tokens ahead. A greedy decoding step then reads the last token and
the guesses in one forward pass (`decoding.engine.Engine._greedy`) and keeps the guesses up to
the first the model would not have chosen, plus the model's own choice there: the answer is
the greedy answer, in fewer passes, because a pass over a few positions costs little more than
a pass over one (on 2 CPU cores: ~1.1x a one-token step for 7 positions; 2-2.5x fewer passes on
Chinook's answers, bench/README.md "Drafted tokens").

`gemma-sql finetune` writes the table next to the adapter (`answer_drafts.json`), as it writes
`answer_vocab.json`; a model without it decodes one token a pass.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from model.llm import adapter_files

FILE = adapter_files.DRAFTS
ORDER = 3  # the longest run of tokens a guess is looked up by
MIN_COUNT = 2  # a continuation seen once is noise, and would double the file


def table(answers: Iterable[Sequence[int]], order: int = ORDER) -> dict[tuple[int, ...], int]:
    """For every run of 1..`order` tokens seen at least MIN_COUNT times followed by the same
    token in `answers`, that most frequent next token."""
    followers: defaultdict[tuple[int, ...], Counter[int]] = defaultdict(Counter)
    for answer in answers:
        for i in range(1, len(answer)):
            for n in range(1, min(order, i) + 1):
                followers[tuple(answer[i - n : i])][answer[i]] += 1
    best = {}
    for context, counts in followers.items():
        token, count = counts.most_common(1)[0]
        if count >= MIN_COUNT:
            best[context] = token
    return best


def write(folder: Path, tokenizer: Any, answers: Iterable[Sequence[int]]) -> None:
    """Save the table of the training answers' token ids, as token strings (readable, and
    portable between tokenizers that share pieces, as `model.llm.decoding.vocab` does)."""
    pieces = tokenizer.convert_ids_to_tokens
    rows = sorted([pieces(list(run)), pieces(token)] for run, token in table(answers).items())
    (folder / FILE).write_text(json.dumps({"order": ORDER, "next": rows}, ensure_ascii=False,
                                          separators=(",", ":")) + "\n", encoding="utf-8")


class AnswerDrafts:
    """The table, in one tokenizer's ids."""

    def __init__(self, next_token: dict[tuple[int, ...], int], order: int = ORDER) -> None:
        self.next_token = next_token
        self.order = order

    @classmethod
    def read(cls, folder: Path, tokenizer: Any) -> AnswerDrafts | None:
        path = folder / FILE
        if not path.is_file():
            return None
        saved = json.loads(path.read_text(encoding="utf-8"))
        ids, unk = tokenizer.convert_tokens_to_ids, tokenizer.unk_token_id
        next_token = {}
        for context, token in saved["next"]:
            row = [*ids(context), ids(token)]
            if unk not in row and None not in row:  # a piece this tokenizer lacks
                next_token[tuple(row[:-1])] = row[-1]
        return cls(next_token, int(saved["order"]))

    def guess(self, tokens: Sequence[int], n: int) -> list[int]:
        """Up to `n` tokens likely to follow `tokens`: each the most frequent follower of the
        longest run before it that the table knows; fewer where it knows none."""
        seen = list(tokens[-self.order :])
        guesses: list[int] = []
        while len(guesses) < n:
            for length in range(min(self.order, len(seen)), 0, -1):
                token = self.next_token.get(tuple(seen[-length:]))
                if token is not None:
                    break
            else:
                break
            guesses.append(token)
            seen.append(token)
        return guesses
