"""The tokens an answer may use: a few thousand of Gemma's 262,144.

The output layer is the largest matmul of a decoding step: on two CPU cores a token of the
270M takes ~31 ms with all 262k rows and ~21 ms without them. A model fine-tuned to write SQL
answers with the tokens its training answers used (SQL words, aliases, punctuation, digits)
and with the prompt's own words (table and column names, values, the question's words),
perhaps in another case or after a quote or a dot. Decoding scores only those rows; the
choice is the same whenever the model's choice is among them, as it is for almost every gold
answer of the eval sets (docs/experiments.md, "The answer vocabulary").

`gemma-sql finetune` writes the training answers' tokens next to the adapter
(`answer_vocab.json`); a model without that file decodes over the whole vocabulary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from model.llm import adapter_files

FILE = adapter_files.VOCAB
_WORD = re.compile(r"[A-Za-z_]+|[0-9]+")
# What may stand before a prompt's word in SQL: `'Rock'`, `T1.Name`, `count(Name)`, `'%rock%'`.
_PREFIXES = ("", " ", "'", '"', ".", "(", "%", "_", "`", "[")


def write(folder: Path, tokenizer: Any, token_ids: Iterable[int],
          inherited: Iterable[str] = ()) -> None:
    """Save the tokens the training answers used, as token strings (readable, and portable
    between tokenizers that share pieces, as Gemma 2 and 3 do), with `inherited` pieces (an
    adapter trained further keeps what its parent could write)."""
    names = sorted(set(tokenizer.convert_ids_to_tokens(sorted(set(token_ids)))) | set(inherited))
    (folder / FILE).write_text(json.dumps(names, ensure_ascii=False, indent=0) + "\n")


def pieces(folder: Path) -> list[str]:
    """The pieces an adapter folder's vocabulary holds; none when it has no such file."""
    path = folder / FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


class AnswerVocab:
    """Token ids an answer may use for a given prompt."""

    def __init__(self, tokenizer: Any, pieces: list[str]) -> None:
        self.tokenizer = tokenizer
        unk = tokenizer.unk_token_id
        ids = {i for i in tokenizer.convert_tokens_to_ids(pieces) if i is not None and i != unk}
        # Every single printable character, alone or after a space: digits, operators, quotes.
        chars = [chr(c) for c in range(33, 127)]
        for encoded in tokenizer(chars + [" " + c for c in chars], add_special_tokens=False)[
            "input_ids"
        ]:
            ids.update(encoded)
        self.base = frozenset(ids)

    @classmethod
    def read(cls, folder: Path, tokenizer: Any) -> AnswerVocab | None:
        if not (folder / FILE).is_file():
            return None
        return cls(tokenizer, pieces(folder))

    def for_prompt(self, prompt: str, prompt_ids: list[int], also: Iterable[int] = ()) -> list[int]:
        """Sorted ids: the answers' tokens, the prompt's, and its words respelled."""
        words = set(_WORD.findall(prompt))
        spellings = {
            prefix + w
            for word in words
            for w in {word, word.lower(), word.upper(), word.capitalize()}
            for prefix in _PREFIXES
        }
        ids = set(self.base) | set(prompt_ids) | set(also)
        for encoded in self.tokenizer(sorted(spellings), add_special_tokens=False)["input_ids"]:
            ids.update(encoded)
        return sorted(ids)
