"""Streaming a loaded model's answer, a piece of text at a time: greedy decoding over a KV
cache that is kept and reused between prompts. Beam search and batched sampling, which read
through the same kept caches and output rows, are `model.llm.decoding.search`.

`decoding.loading` builds an `Engine`; the prompt text itself is `prompting.prompt`'s business.
torch is imported inside functions: importing this module must stay instant (no torch), so the
app paints before the model loads.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.llm.decoding.drafts import AnswerDrafts
from model.llm.decoding.search import CandidateDecoding, OutputRows, token_of
from model.llm.decoding.unadapted import Deltas, lora_deltas, without_adapters
from model.llm.decoding.vocab import AnswerVocab
from model.llm.prompting.prompt import QUESTION_FIRST, review_prompt
from model.llm.protocol import GenerationStats
from model.llm.weights.cpu import cpu_kernels
from model.llm.weights.dtype import dtype_name
from model.llm.weights.registry import causal_lm

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


# Guesses a greedy step checks (decoding.drafts): more cost more than they save on a CPU
# (a pass over 7 positions costs 1.1x a one-token step; docs/experiments.md).
DRAFT_TOKENS = 4


def _last_position(inputs: torch.Tensor) -> torch.Tensor:
    """`logits_to_keep` for the last position only, as an index tensor rather than `1`.

    Only the last position's logits are used, and the 262k-row output layer is the largest
    matmul of a step. The int form slices the prompt's hidden states to a (1, 1, d) view that
    keeps the prompt's stride; torch.matmul folds that into one mm only when the weight
    requires grad (as freshly loaded weights do), so for a merged adapter (no grad) it took
    bmm and copied the whole 335 MB output layer on every prompt: 2x the prefill time. An
    index tensor gathers a fresh contiguous row instead.
    """
    import torch

    return torch.tensor([inputs.shape[1] - 1], device=inputs.device)


def _logprob(logits: torch.Tensor, column: int) -> float:
    """The log-probability of `column` in one row of logits."""
    import torch

    return float(logits[column].float() - torch.logsumexp(logits.float(), dim=-1))


class _IncrementalDecoder:
    """Token ids in, new text out.

    Decoding each token alone loses SentencePiece's word-initial spaces and splits multi-byte
    characters; so the whole answer so far is decoded and only the new suffix is emitted,
    held back while it ends in an incomplete character (U+FFFD).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def _decode(self) -> str:
        return self.tokenizer.decode(
            self.ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self._decode()
        if text.endswith("\ufffd") or not text.startswith(self.emitted):
            return ""
        piece, self.emitted = text[len(self.emitted) :], text
        return piece

    def flush(self) -> str:
        text = self._decode()
        if not text.startswith(self.emitted):
            return ""
        piece, self.emitted = text[len(self.emitted) :], text
        return piece


def stop_ids_for(llm: Any, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids that end an answer: the model's eos ids, the tokenizer's, and <end_of_turn>."""
    ids: set[int] = set()
    configured = getattr(getattr(llm, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.add(end_of_turn)
    return ids


@dataclass
class Engine(CandidateDecoding):
    """A loaded model and its tokenizer; `stream` turns a prompt into text pieces.

    One generation at a time: a second `stream` waits for the first to finish (a cancelled
    one finishes within a token).
    """

    name: str
    model: Any
    tokenizer: PreTrainedTokenizerBase
    device: str = "cpu"
    stop_ids: set[int] = field(default_factory=set)
    last_stats: GenerationStats = field(default_factory=GenerationStats)
    load_seconds: float = 0.0
    adapters: list[Path] = field(default_factory=list)  # LoRA adapters applied, in order
    answer_vocab: AnswerVocab | None = None  # None: decode over the whole vocabulary
    prompt_layout: str = QUESTION_FIRST  # the one the model was trained on (prompting.prompt)
    dtype: str = ""  # compute dtype, "bf16", "fp32" or "fp16" (weights.dtype); "": the model's
    static_decoding: bool | None = None  # greedy over a static cache (decoding.static); None: CUDA
    answer_drafts: AnswerDrafts | None = None  # guesses to check ahead (model.llm.decoding.drafts)
    draft_tokens: int = DRAFT_TOKENS  # guesses a greedy step checks; 0: one token a pass

    def __post_init__(self) -> None:
        self.model.eval()
        if not self.dtype:
            self.dtype = dtype_name(getattr(self.model, "dtype", ""))
        if self.static_decoding is None:
            self.static_decoding = self.device.startswith("cuda")
        self._static: Any = None  # model.llm.decoding.static.StaticGreedy, made on first use
        if not self.stop_ids:
            self.stop_ids = stop_ids_for(self.model, self.tokenizer)
        self._lock = threading.Lock()
        self._last_prefill: tuple[list[int], Any, Any] | None = None  # see _prefill
        self._shared: tuple[list[int], Any] | None = None  # see _prefill
        self._last_rows: tuple[list[int], AnswerVocab, OutputRows] | None = None
        self._merged: list[Deltas] | None = None  # the merged adapters' deltas, read on first use

    def encode(self, prompt: str) -> list[int]:
        """Token ids with <bos> exactly once, whether or not the prompt text starts with it."""
        bos = self.tokenizer.bos_token
        add_special = not (bos and prompt.startswith(bos))
        ids: list[int] = self.tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
        return ids

    def _shared_length(self, ids: list[int], shared: str) -> int:
        """How many leading `ids` are the tokens of `shared`, the beginning of their prompt's
        text (fewer where a token straddles the boundary: it is left to the rest)."""
        if not shared:
            return 0
        n = 0
        for a, b in zip(self.encode(shared), ids, strict=False):
            if a != b:
                break
            n += 1
        return n

    def _read(self, ids: list[int], cache: Any) -> tuple[torch.Tensor, Any]:
        """One forward pass over `ids` after `cache` (None: from the start)."""
        import torch

        inputs = torch.tensor([ids], device=self.device)
        with torch.inference_mode(), cpu_kernels(self.device, rows=len(ids)):
            out = self.model(input_ids=inputs, cache=cache, use_cache=True,
                             logits_to_keep=_last_position(inputs))
        return out.logits[:, -1], out.cache

    def _prefill(self, ids: list[int], shared: str = "") -> tuple[torch.Tensor, Any, int]:
        """The prompt read: its last position's logits (1, vocab), the KV cache, and how many
        of the ids were not read again (their cache was kept).

        The ids of `shared` (the prompt's beginning that depends only on the database, see
        `prompting.prompt.shared_prefix`) are read on their own and their cache is kept: a later
        prompt that starts with the same ids reads only the rest. A copy, because the cache of
        Gemma 3's sliding-window layers cannot be cut back to a shorter prompt.
        The last prompt's cache is kept too (a copy, ~20 MB for a 1k-token prompt on the 270M)
        so that beam candidates for the question just streamed skip reading it again.
        """
        if self._last_prefill is not None and self._last_prefill[0] == ids:
            return self._last_prefill[1], copy.deepcopy(self._last_prefill[2]), len(ids)
        cache, start = None, 0
        kept = self._shared
        if kept is not None and len(kept[0]) < len(ids) and ids[: len(kept[0])] == kept[0]:
            cache, start = copy.deepcopy(kept[1]), len(kept[0])
            reused = start
        else:
            reused = 0
            n = self._shared_length(ids, shared)
            if 0 < n < len(ids):
                cache, start = self._read(ids[:n], None)[1], n
                self._shared = (ids[:n], copy.deepcopy(cache))
        logits, cache = self._read(ids[start:], cache)
        self._last_prefill = (ids, logits, copy.deepcopy(cache))
        return logits, cache, reused

    def review(self, question: str, sqls: Sequence[str],
               cancel: threading.Event | None = None) -> list[float]:
        """How well each SQL accounts for the question: the log-probability of the question
        after it (`prompting.prompt.REVIEW`), under the base model, the fine-tune's adapters
        taken out (`model.llm.decoding.unadapted`): trained to write SQL from questions, the adapted
        model reads them back less well (docs/experiments.md, "Reading the question back").
        One forward pass an SQL; [] when `cancel` is set before the last."""
        import torch

        with self._lock:
            if self._merged is None:
                like = next(self.model.parameters())
                merged = not hasattr(self.model, "disable_adapter")
                self._merged = [lora_deltas(a, like) for a in self.adapters] if merged else []
            scores = []
            with torch.inference_mode(), without_adapters(self.model, self._merged):
                for sql in sqls:
                    if cancel is not None and cancel.is_set():
                        return []
                    head, question_text = review_prompt(sql, question)
                    ids = self.encode(head)
                    asked = self.tokenizer(question_text, add_special_tokens=False)["input_ids"]
                    inputs = torch.tensor([ids + asked], device=self.device)
                    with cpu_kernels(self.device, rows=inputs.shape[1]):
                        logits = self.model(input_ids=inputs, use_cache=False,
                                            logits_to_keep=len(asked) + 1).logits[0, :-1]
                    logp = torch.log_softmax(logits.float(), dim=-1)
                    target = torch.tensor(asked, device=self.device)[:, None]
                    scores.append(float(logp.gather(1, target).sum()))
            return scores

    def warm(self, shared: str) -> None:
        """Read a shared prompt beginning ahead of the question (while the user types).

        Kept as `_prefill` keeps it, so an answer is the same whether or not this ran first.
        (Were the question's first token to merge with the last one here, the question would
        read the beginning again: our prompts end it with "Question:", and no question in the
        eval sets merges.)"""
        with self._lock:
            ids = self.encode(shared)
            if self._shared is None or self._shared[0] != ids:
                self._shared = (ids, self._read(ids, None)[1])

    def _output_rows(self, prompt: str, ids: list[int]) -> OutputRows | None:
        """The output layer's rows an answer to `prompt` may use (see decoding.vocab); None: all.

        The last prompt's are kept, as its prompt read is (`_prefill`): beam candidates for the
        question just streamed need the same rows (~30 ms to build).
        """
        vocab = self.answer_vocab
        if vocab is None:
            return None
        last = self._last_rows
        if last is not None and last[0] == ids and last[1] is vocab:
            return last[2]
        import torch

        index = torch.tensor(vocab.for_prompt(prompt, ids, also=self.stop_ids), device=self.device)
        weight = causal_lm(self.model).get_output_embeddings().weight
        rows = OutputRows(index, weight.index_select(0, index))
        self._last_rows = (ids, vocab, rows)
        return rows

    def _step(self, inputs: torch.Tensor, cache: Any,
              allowed: OutputRows | None) -> tuple[torch.Tensor, Any]:
        """One decoding pass: the next-token logits over `allowed` (all when None) at every
        position of every row, (rows, positions, columns)."""
        import torch

        # inference_mode per pass, never around a yield: the mode is thread-local state and
        # must not leak into the caller's code.
        with torch.inference_mode(), cpu_kernels(self.device, rows=inputs.numel()):
            if allowed is None:
                out = self.model(input_ids=inputs, cache=cache, use_cache=True)
                return out.logits, out.cache
            lm = causal_lm(self.model)
            out = lm.get_decoder()(input_ids=inputs, cache=cache, use_cache=True)
            logits = torch.nn.functional.linear(out.last_hidden_state, allowed.weight)
            cap = getattr(lm.config, "final_logit_softcapping", None)
            if cap:  # Gemma 2; monotonic, but beam scores are log-probs of the capped logits
                logits = torch.tanh(logits / cap) * cap
            return logits, out.cache

    def stream(
        self,
        prompt: str,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 256,
        shared: str = "",
    ) -> Generator[str, None, None]:
        """Greedy decoding; yields text as it is produced, ends at a stop id or on `cancel`.

        `shared` is the beginning of `prompt` that later prompts will likely share (see
        `_prefill`): its KV cache is kept, or reused from an earlier prompt.

        An own loop over the KV cache rather than `generate()` + a streamer thread: same speed
        (measured), no extra thread, and `cancel` is checked before every forward pass.
        Only the last position's logits are computed: the 262k-word vocabulary makes the
        output layer the largest matmul, and the prompt's logits are never needed.
        """
        stats = GenerationStats()
        self.last_stats = stats
        with self._lock:
            started = time.perf_counter()
            ids = self.encode(prompt)
            stats.prompt_tokens = len(ids)
            decoder = _IncrementalDecoder(self.tokenizer)
            tokens = (self._static_greedy(prompt, ids, max_new_tokens) if self.static_decoding
                      else self._greedy(prompt, ids, shared, stats))
            stats.stop = "length"
            produced = 0
            try:
                for step in range(max_new_tokens):
                    if cancel is not None and cancel.is_set():
                        stats.stop = "cancel"
                        break
                    token = next(tokens)
                    produced += 1
                    if step == 0:
                        stats.first_token_s = time.perf_counter() - started
                    if token in self.stop_ids:
                        stats.stop = "eos"
                        break
                    stats.tokens += 1
                    piece = decoder.push(token)
                    if piece:
                        yield piece
                tail = decoder.flush()
                if tail:
                    yield tail
            except GeneratorExit:
                stats.stop = "closed"
                raise
            finally:
                stats.seconds = time.perf_counter() - started
                decoding = stats.seconds - stats.first_token_s
                if produced > 1 and decoding > 0:  # the tokens after the prompt read's
                    stats.tokens_per_s = (produced - 1) / decoding

    def _greedy(self, prompt: str, ids: list[int], shared: str,
                stats: GenerationStats) -> Iterator[int]:
        """The most likely next token, again and again: the prompt's read first (how much of it
        was reused goes to `stats`), then one forward pass per step. A step reads the last
        token and the drafts' guesses of the next ones (`model.llm.decoding.drafts`), and yields the
        model's choice at each position up to the first guess it did not choose: the guesses
        it agreed with were its choices too, and the cache keeps only what was chosen."""
        import torch

        logits, cache, stats.cached_tokens = self._prefill(ids, shared)
        column = int(logits[0].argmax())
        stats.min_logprob = _logprob(logits[0], column)
        yield column
        allowed = self._output_rows(prompt, ids)  # after the first token is out: it needs none
        drafts = self.answer_drafts if self.draft_tokens > 0 else None
        if drafts is not None:
            cache.activate_past_recording()  # so the sliding-window layers can be cut back
        answer = [column]
        while True:
            guesses: list[int] = []
            if drafts is not None:  # the table looks back `order` tokens at most
                guesses = drafts.guess(ids[-drafts.order :] + answer[-drafts.order :],
                                       self.draft_tokens)
            inputs = torch.tensor([[answer[-1], *guesses]], device=self.device)
            logits, cache = self._step(inputs, cache, allowed)
            stats.passes += 1
            taken = 0  # guesses the model agreed with
            for row, guess in zip(logits[0], [*guesses, None], strict=True):
                column = int(row.argmax())
                stats.min_logprob = min(stats.min_logprob, _logprob(row, column))
                token = token_of(allowed, column)
                answer.append(token)
                yield token
                if token != guess:
                    break
                taken += 1
            if drafts is not None:
                # Drop the guesses after the `taken` ones the model agreed with (crop(0) still
                # trims the sliding-window layers back to their window).
                cache.crop(-(len(guesses) - taken))

    def _static_greedy(self, prompt: str, ids: list[int], max_new_tokens: int) -> Iterator[int]:
        """`_greedy`'s tokens, over a static cache (`decoding.static`; CUDA graphs on a GPU,
        where reading the whole prompt again costs less than keeping its cache)."""
        from model.llm.decoding.static import StaticGreedy

        if self._static is None:
            self._static = StaticGreedy(causal_lm(self.model),
                                        compiled=self.device.startswith("cuda"))
        allowed = self._output_rows(prompt, ids)
        yield from self._static.tokens(ids, None if allowed is None else allowed.ids,
                                       max_new_tokens)

    def generate(
        self,
        prompt: str,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 256,
        shared: str = "",
    ) -> str:
        """The whole answer as one string."""
        return "".join(self.stream(prompt, cancel=cancel, max_new_tokens=max_new_tokens,
                                   shared=shared))

