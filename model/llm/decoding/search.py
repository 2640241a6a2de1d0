"""Several answers to one prompt at once: beam search and batched sampling, the candidates
the pipeline checks beside the greedy answer. A mixin of `model.llm.decoding.engine.Engine`, whose
prompt reading (`_prefill`), decoding step (`_step`) and output rows it uses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from model.llm.protocol import Sampled

if TYPE_CHECKING:
    import torch


@dataclass
class OutputRows:
    """A slice of the output layer: its token ids and their weight rows."""

    ids: torch.Tensor
    weight: torch.Tensor


def _draw(logp: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """One column a row of log-probabilities, drawn at `temperature` (0: the most likely)."""
    import torch

    if temperature <= 0:
        return logp.argmax(dim=-1)
    probs = torch.softmax(logp / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def token_of(allowed: OutputRows | None, column: int) -> int:
    """The token id of a logits column (columns are token ids when all rows are scored)."""
    return column if allowed is None else int(allowed.ids[column])


class CandidateDecoding:
    """Beam search and sampling for `Engine` (the attributes and methods below are its)."""

    # of Engine
    _lock: threading.Lock
    stop_ids: set[int]
    device: str
    tokenizer: Any
    encode: Callable[[str], list[int]]
    _prefill: Callable[..., tuple[torch.Tensor, Any, int]]
    _output_rows: Callable[[str, list[int]], OutputRows | None]
    _step: Callable[..., Any]

    def _first_step(self, prompt: str, shared: str) -> tuple[torch.Tensor, Any, OutputRows | None]:
        """The prompt read (its kept beginning reused): the first token's log-probabilities,
        with the stop ids ruled out (an empty answer is no answer), the cache and the output
        rows in use."""
        import torch

        ids = self.encode(prompt)
        logits, cache, _ = self._prefill(ids, shared)
        allowed = self._output_rows(prompt, ids)
        logp = torch.log_softmax(logits.float(), dim=-1)
        stop = torch.tensor(sorted(self.stop_ids), dtype=torch.long, device=self.device)
        logp[:, stop] = -torch.inf
        return logp, cache, allowed

    def beams(
        self,
        prompt: str,
        n: int = 4,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 192,
        shared: str = "",
    ) -> list[str]:
        """The `n` most likely answers by beam search, best first (score: mean log-prob).

        Written out rather than `generate(num_beams=n)`, which repeats the prompt n times
        before reading it; here the prompt is read once and its KV cache repeated n times.
        """
        import torch

        with self._lock:
            logp, cache, allowed = self._first_step(prompt, shared)
            scores, first = logp[0].topk(n)
            cache.batch_repeat_interleave(n)
            alive = [[int(t)] for t in first]
            finished: list[tuple[float, list[int]]] = []
            for length in range(2, max_new_tokens + 1):
                if cancel is not None and cancel.is_set():
                    break
                step = torch.tensor([[a[-1]] for a in alive], device=self.device)
                logits, cache = self._step(step, cache, allowed)
                total = scores[:, None] + torch.log_softmax(logits[:, -1].float(), dim=-1)
                parents, next_scores, next_alive = self._next_beams(
                    alive, total, n, allowed, length, finished)
                finished.sort(key=lambda f: -f[0])
                # done when no live beam, even ending now, would enter the best n (HF's rule)
                if len(finished) >= n and max(next_scores) / length <= finished[n - 1][0]:
                    break
                cache.reorder_cache(torch.tensor(parents, device=self.device))
                alive, scores = next_alive, torch.tensor(next_scores, device=self.device)
            if len(finished) < n:  # out of tokens: the best unfinished beams, cut off
                finished += [(float(s) / len(a), a) for s, a in zip(scores, alive, strict=True)]
                finished.sort(key=lambda f: -f[0])
            return [
                self.tokenizer.decode(tokens, skip_special_tokens=False,
                                      clean_up_tokenization_spaces=False)
                for _, tokens in finished[:n]
            ]

    def sample(
        self,
        prompt: str,
        n: int = 4,
        temperature: float = 0.7,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 128,
        shared: str = "",
        seed: int = 0,
    ) -> list[Sampled]:
        """`n` answers drawn at `temperature`, decoded together: the prompt is read once (or its
        kept reading reused) and each step is one forward pass over the answers still going.
        Each comes with its mean log-probability under the model, and whether it ended (not
        cut off by `max_new_tokens` or `cancel`). Seeded: the same prompt, seed and kernels give
        the same answers."""
        import torch

        with self._lock:
            logp, cache, allowed = self._first_step(prompt, shared)
            generator = torch.Generator(device=self.device).manual_seed(seed)
            logp = logp.expand(n, -1)
            first = _draw(logp, temperature, generator)
            answers = [[int(t)] for t in first]
            scores = [float(logp[0, t]) for t in first]
            going = list(range(n))  # the answers still being decoded, in the cache's row order
            cache.batch_repeat_interleave(n)
            for _ in range(max_new_tokens - 1):
                if cancel is not None and cancel.is_set():
                    break
                step = torch.tensor([[answers[a][-1]] for a in going], device=self.device)
                logits, cache = self._step(step, cache, allowed)
                logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
                drawn = _draw(logp, temperature, generator).tolist()
                kept = []
                for row, (a, column) in enumerate(zip(going, drawn, strict=True)):
                    scores[a] += float(logp[row, column])
                    token = token_of(allowed, column)
                    if token not in self.stop_ids:
                        answers[a].append(token)
                        kept.append(row)
                if not kept:
                    going = []
                    break
                if len(kept) < len(going):  # finished answers leave the batch
                    cache.batch_select_indices(torch.tensor(kept, device=self.device))
                    going = [going[row] for row in kept]
            return [
                Sampled(self.tokenizer.decode(tokens, skip_special_tokens=False,
                                              clean_up_tokenization_spaces=False),
                        score / len(tokens), finished=a not in going)
                for a, (tokens, score) in enumerate(zip(answers, scores, strict=True))
            ]

    def _next_beams(
        self,
        alive: list[list[int]],
        total: torch.Tensor,
        n: int,
        allowed: OutputRows | None,
        length: int,
        finished: list[tuple[float, list[int]]],
    ) -> tuple[list[int], list[float], list[list[int]]]:
        """The beams that go on from `alive`, given `total`, each beam's score for every next
        token: the rows they extend, their scores and tokens. Endings among the n best join
        `finished`, scored by mean log-prob over `length` tokens."""
        top_scores, top = total.view(-1).topk(2 * n)
        parents: list[int] = []
        next_scores: list[float] = []
        next_alive: list[list[int]] = []
        for rank, (score, flat) in enumerate(zip(top_scores.tolist(), top.tolist(), strict=True)):
            row, column = divmod(flat, total.shape[1])
            token = token_of(allowed, column)
            if token in self.stop_ids:
                if rank < n:  # an ending counts only among the n best (HF's rule)
                    finished.append((score / length, alive[row]))
            elif len(next_alive) < n:
                parents.append(row)
                next_scores.append(score)
                next_alive.append([*alive[row], token])
        return parents, next_scores, next_alive
