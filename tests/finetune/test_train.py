"""The training loop on a tiny random Gemma: real code paths, CPU seconds."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import ROWS, tiny_gemma

import finetune.train as train_mod
from finetune.config import TrainConfig
from finetune.data import collate, tokenize
from finetune.lora import add_lora
from finetune.loss import AnswerLoss
from finetune.train import train
from model.llm.decoding.drafts import AnswerDrafts, table


def config(rows_file: Path, out: Path, **kw: Any) -> TrainConfig:
    base = dict(base="tiny", quant="none", data=str(rows_file), output=str(out), batch_size=2,
                lr=5e-3, warmup_steps=1, max_steps=8, save_every=0, lora_r=4, lora_alpha=8,
                gradient_checkpointing=False)
    return TrainConfig(**{**base, **kw})


def lora_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def batch(tok: Any) -> dict[str, torch.Tensor]:
    return collate([tokenize(tok, e) for e in ROWS[:3]], tok.pad_token_id)


@pytest.mark.parametrize("kind", ["gemma3", "gemma2"])
def test_answer_only_loss_equals_full_logits_loss(tok: Any, kind: str) -> None:
    """Same value and same gradients as model(labels=...).loss; gemma2 covers the softcap."""
    model = add_lora(tiny_gemma(tok, kind).float(), TrainConfig(
        quant="none", lora_dropout=0.0, gradient_checkpointing=False))
    if kind == "gemma2":
        assert model.config.final_logit_softcapping
    for n, p in model.named_parameters():  # B = 0 at init would hide A's gradients
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    b = batch(tok)
    full = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                 labels=b["labels"]).loss
    full.backward()
    full_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    loss_sum, n_tokens = AnswerLoss(model)(**b)
    ours = loss_sum / n_tokens
    ours.backward()
    assert n_tokens == (b["labels"][:, 1:] != -100).sum()
    assert torch.allclose(ours, full, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        if n in full_grads:
            assert torch.allclose(p.grad, full_grads[n], rtol=1e-4, atol=1e-6), n


def test_loss_falls_and_outputs_are_written(tok: Any, rows_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    metrics = train(config(rows_file, out, max_steps=12), tiny_gemma(tok), tok, say=lambda _: None)
    losses = [h["loss"] for h in metrics["history"]]
    assert metrics["steps"] == 12 and metrics["status"] == "finished"
    assert sum(losses[-3:]) / 3 < losses[0] - 0.2
    for name in ("adapter_config.json", "adapter_model.safetensors", "train_config.json",
                 "metrics.json", "loss.png", "README.md"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["seed"] == 0 and saved["data_hash"] and saved["tokens_per_second"] > 0
    saved_config = json.loads((out / "train_config.json").read_text())
    assert TrainConfig.from_dict(saved_config).max_steps == 12
    card = (out / "README.md").read_text()
    assert saved["data_hash"] in card and "final loss" in card
    # the tokens of the training answers, which the engine decodes over
    answers = {t for row in ROWS for t in tokenize(tok, row).labels if t != -100}
    pieces = json.loads((out / "answer_vocab.json").read_text())
    assert set(tok.convert_tokens_to_ids(pieces)) == answers
    # and the drafts' table of them: every training answer is guessed from its own runs
    drafts = AnswerDrafts.read(out, tok)
    labels = [[t for t in tokenize(tok, row).labels if t != -100] for row in ROWS]
    assert drafts is not None and drafts.next_token == table(labels)
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(str(out / "adapter_model.safetensors")).values()} == {
        torch.bfloat16}


def test_data_parallel_ranks_split_the_data_and_end_with_the_same_weights(
    rows_file: Path, tmp_path: Path
) -> None:
    """What torchrun/accelerate launch start on several GPUs, on CPU: two processes (gloo)."""
    from tiny import run_two_ranks

    out = tmp_path / "run"
    reports = run_two_ranks(rows_file, out)
    metrics = reports[0][0]
    # each rank took every other batch: 6 examples of batch 1 make 3 steps, not 6
    assert metrics["world_size"] == 2 and metrics["total_steps"] == metrics["steps"] == 3
    assert reports[1][0] == {}  # rank 1 neither logs nor saves
    assert (out / "adapter_model.safetensors").is_file()
    # gradients were averaged across the ranks: the same LoRA weights, and trained ones
    lora0, lora1 = reports[0][1], reports[1][1]
    assert lora0 == lora1
    assert any(any(v != 0 for v in torch.tensor(w).flatten().tolist())
               for n, w in lora0.items() if "lora_B" in n)


def test_adapter_reloads_with_peft_to_the_same_outputs(
    tok: Any, rows_file: Path, tmp_path: Path
) -> None:
    from peft import PeftModel

    out = tmp_path / "run"
    trained = tiny_gemma(tok)
    train(config(rows_file, out, max_steps=4), trained, tok, say=lambda _: None)
    reloaded = PeftModel.from_pretrained(tiny_gemma(tok), out)  # same seed: same base
    trained.eval()
    reloaded.eval()
    b = batch(tok)
    with torch.no_grad():
        a = trained(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        r = reloaded(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        plain = tiny_gemma(tok)(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    assert torch.allclose(a.float(), r.float(), atol=2e-2)
    assert not torch.allclose(a.float(), plain.float(), atol=2e-2)  # the adapter matters


def test_interrupt_saves_and_resume_matches_an_uninterrupted_run(
    tok: Any, rows_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = tiny_gemma(tok)
    train(config(rows_file, tmp_path / "whole"), whole, tok, say=lambda _: None)

    real_get_lr = train_mod.get_lr

    def ctrl_c_at_step_5(step: int, *args: Any) -> float:
        if step == 5:
            raise KeyboardInterrupt
        return real_get_lr(step, *args)

    monkeypatch.setattr(train_mod, "get_lr", ctrl_c_at_step_5)
    out = tmp_path / "run"
    first = train(config(rows_file, out), tiny_gemma(tok), tok, say=lambda _: None)
    assert first["status"] == "interrupted" and first["steps"] == 5
    assert (out / "adapter_model.safetensors").is_file()  # usable even when interrupted
    monkeypatch.setattr(train_mod, "get_lr", real_get_lr)
    resumed_model = tiny_gemma(tok)
    second = train(config(rows_file, out, resume=True), resumed_model, tok, say=lambda _: None)
    assert second["steps"] == 8 and second["status"] == "finished"
    assert [h["step"] for h in second["history"]] == list(range(1, 9))
    a, b = lora_weights(whole), lora_weights(resumed_model)
    assert a.keys() == b.keys()
    for n in a:
        assert torch.allclose(a[n], b[n], atol=1e-6), n


def test_a_crash_loses_at_most_save_every_steps(
    tok: Any, rows_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_get_lr = train_mod.get_lr

    def crash_at_step_5(step: int, *args: Any) -> float:
        if step == 5:
            raise RuntimeError("killed")
        return real_get_lr(step, *args)

    monkeypatch.setattr(train_mod, "get_lr", crash_at_step_5)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        train(config(rows_file, out, save_every=2), tiny_gemma(tok), tok, say=lambda _: None)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 4
    monkeypatch.setattr(train_mod, "get_lr", real_get_lr)
    messages: list[str] = []
    metrics = train(config(rows_file, out, save_every=2, resume=True), tiny_gemma(tok), tok,
                    say=messages.append)
    assert any("at step 4" in m for m in messages)
    assert metrics["steps"] == 8


def test_qlora_gradients_match_a_dequantized_reference(tok: Any, tmp_path: Path) -> None:
    """4-bit NF4 on CPU: after an inference-mode forward (which makes bitsandbytes repack
    weights on AVX512-BF16 CPUs unless disabled), a training step's LoRA gradients equal
    those of the same LoRA on a float copy with the dequantized base weights."""
    import bitsandbytes as bnb
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    tiny_gemma(tok).save_pretrained(tmp_path / "base")
    q = AutoModelForCausalLM.from_pretrained(
        tmp_path / "base", dtype=torch.bfloat16, device_map={"": "cpu"},
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16))
    cfg = TrainConfig(quant="nf4", lora_r=4, lora_dropout=0.0, gradient_checkpointing=False)
    dequantized = {
        n + ".weight": bnb.functional.dequantize_4bit(m.weight.data, m.weight.quant_state)
        for n, m in q.named_modules() if isinstance(m, bnb.nn.Linear4bit)
    }
    assert dequantized
    q = add_lora(q, cfg)
    assert all(not m.support_avx512bf16_for_cpu
               for m in q.modules() if isinstance(m, bnb.nn.Linear4bit))
    for n, p in q.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)

    ref = AutoModelForCausalLM.from_pretrained(tmp_path / "base", dtype=torch.float32)
    ref.load_state_dict({k: v.float() for k, v in dequantized.items()}, strict=False)
    ref = add_lora(ref, TrainConfig(quant="none", lora_r=4, lora_dropout=0.0,
                                    gradient_checkpointing=False))
    set_peft_model_state_dict(ref, get_peft_model_state_dict(q))

    b = batch(tok)
    q.eval()
    with torch.no_grad():  # the inference-mode forward that used to repack the weights
        q(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    q.train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s, n = AnswerLoss(q)(**b)
        (s / n).backward()
    assert not [w for w in caught if "autograd kernel" in str(w.message)]
    s_ref, n_ref = AnswerLoss(ref)(**b)
    (s_ref / n_ref).backward()
    assert abs((s / n).item() - (s_ref / n_ref).item()) < 0.02
    grads_q = {k: p.grad.float() for k, p in q.named_parameters() if p.requires_grad}
    grads_r = {k: p.grad.float() for k, p in ref.named_parameters() if p.requires_grad}
    assert grads_q.keys() == grads_r.keys() and grads_q
    for k in grads_q:
        g, r = grads_q[k].flatten(), grads_r[k].flatten()
        assert g.norm() > 0, k
        cos = torch.nn.functional.cosine_similarity(g, r, dim=0)
        assert cos > 0.99 and (g - r).norm() / r.norm() < 0.1, (k, cos)


def test_init_adapter_continues_from_its_weights(
    tok: Any, rows_file: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    first = train(config(rows_file, tmp_path / "first", max_steps=12), tiny_gemma(tok), tok,
                  say=lambda _: None)
    # lr 0: the continued run must write back exactly the weights it started from
    kept = train(config(rows_file, tmp_path / "kept", max_steps=2, lr=0.0,
                        init_adapter=str(tmp_path / "first")), tiny_gemma(tok), tok,
                 say=lambda _: None)
    a = load_file(str(tmp_path / "first" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "kept" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fresh_start = first["history"][0]["loss"]
    assert kept["history"][0]["loss"] < fresh_start - 0.2  # it starts where the first ended


def test_init_adapter_keeps_its_answer_vocabulary(
    tok: Any, rows_file: Path, tmp_path: Path
) -> None:
    from model.llm.decoding import vocab

    train(config(rows_file, tmp_path / "first", max_steps=1), tiny_gemma(tok), tok,
          say=lambda _: None)
    parent = set(vocab.pieces(tmp_path / "first"))
    one_row = tmp_path / "one.jsonl"
    one_row.write_text(rows_file.read_text().splitlines()[0] + "\n")
    train(config(one_row, tmp_path / "narrow", max_steps=1), tiny_gemma(tok), tok,
          say=lambda _: None)
    train(config(one_row, tmp_path / "further", max_steps=1, init_adapter=str(tmp_path / "first")),
          tiny_gemma(tok), tok, say=lambda _: None)
    # trained on one question, it may still write every token its parent could
    assert set(vocab.pieces(tmp_path / "narrow")) < parent
    assert set(vocab.pieces(tmp_path / "further")) == parent


def test_init_adapter_of_another_rank_is_refused_before_writing(
    tok: Any, rows_file: Path, tmp_path: Path
) -> None:
    train(config(rows_file, tmp_path / "first", max_steps=1), tiny_gemma(tok), tok,
          say=lambda _: None)
    out = tmp_path / "second"
    with pytest.raises(ValueError, match="rank 4 and alpha 8, but --lora-r 8"):
        train(config(rows_file, out, lora_r=8, init_adapter=str(tmp_path / "first")),
              tiny_gemma(tok), tok, say=lambda _: None)
    with pytest.raises(ValueError, match="not a PEFT adapter"):
        train(config(rows_file, out, init_adapter=str(tmp_path)), tiny_gemma(tok), tok,
              say=lambda _: None)
    assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the seed's recipe on a GPU")
def test_qlora_on_cuda_with_paged_8bit_adamw(
    tok: Any, rows_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's recipe end to end on CUDA: the base loaded from disk in 4-bit NF4, gradient
    checkpointing, paged 8-bit AdamW; the loss falls and the adapter reloads on the GPU."""
    import bitsandbytes as bnb
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tiny_gemma(tok).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    optimizers: list[torch.optim.Optimizer] = []
    real_make_optimizer = train_mod.make_optimizer

    def recorded(*args: Any) -> torch.optim.Optimizer:
        optimizers.append(real_make_optimizer(*args))
        return optimizers[-1]

    monkeypatch.setattr(train_mod, "make_optimizer", recorded)
    out = tmp_path / "run"
    metrics = train(config(rows_file, out, base=str(tmp_path / "base"), quant="nf4",
                           device="cuda", gradient_checkpointing=True, max_steps=12),
                    say=lambda _: None)
    assert isinstance(optimizers[0], bnb.optim.PagedAdamW8bit)
    losses = [h["loss"] for h in metrics["history"]]
    assert metrics["status"] == "finished" and sum(losses[-3:]) / 3 < losses[0] - 0.2
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base", dtype=torch.bfloat16)
    reloaded = PeftModel.from_pretrained(base.to("cuda"), out)
    b = {k: v.to("cuda") for k, v in batch(tok).items()}
    with torch.no_grad():
        assert torch.isfinite(reloaded(input_ids=b["input_ids"],
                                       attention_mask=b["attention_mask"]).logits).all()
