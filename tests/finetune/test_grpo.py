"""GRPO on a tiny random Gemma: one step moves the policy toward the rewarded answer; the loop
runs on a real Spider database and resumes from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import tiny_gemma

from finetune.config import TrainConfig
from finetune.grpo import GrpoConfig, answer_logprobs, draw, grpo, grpo_loss, reference_of
from finetune.lora import add_lora
from finetune.sample import read_questions
from model.llm.decoding.engine import stop_ids_for
from model.llm.decoding.vocab import AnswerVocab
from model.llm.prompting.prompt import build_prompt

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SPIDER = SHARED / "train" / "spider_train.jsonl"
SPIDER_DBS = SHARED / "spider_train_databases"


def policy_of(tok: Any) -> torch.nn.Module:
    """The tiny model with a LoRA adapter that is not the identity (a 'supervised' one)."""
    policy = add_lora(tiny_gemma(tok).float(), TrainConfig(
        quant="none", lora_r=4, lora_alpha=8, lora_dropout=0.0, gradient_checkpointing=False))
    torch.manual_seed(1)
    for n, p in policy.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05)
    return policy.eval()


def test_one_grpo_step_raises_the_likelihood_of_the_rewarded_answer(tok: Any) -> None:
    policy = policy_of(tok)
    ref = reference_of(policy)
    context = 'CREATE TABLE "singer" ("id" int, "name" text);'
    prompt = tok(build_prompt("How many singers are there?", context))["input_ids"]
    answers = [tok(text, add_special_tokens=False)["input_ids"] for text in (
        " SELECT count(*) FROM singer", " SELECT name FROM singer", " SELECT id FROM singer",
        " SELECT count(*) FROM head")]
    rewards = [1.0, 0.0, 0.0, 0.25]

    def likelihoods() -> torch.Tensor:
        with torch.no_grad():
            logp, mask = answer_logprobs(policy, prompt, answers, tok.pad_token_id)
        return (logp * mask).sum(1)

    before = likelihoods()
    lora = [p for n, p in policy.named_parameters() if "lora_" in n]
    opt = torch.optim.AdamW(lora, lr=1e-3)
    loss, kl = grpo_loss(policy, ref, prompt, answers, rewards, beta=0.04,
                         pad_id=tok.pad_token_id)
    assert abs(kl) < 1e-4  # the policy starts as the reference
    loss.backward()
    assert all(p.grad is not None for p in lora)
    assert not any(p.requires_grad for p in ref.parameters())
    opt.step()
    after = likelihoods()
    assert after[0] > before[0]  # the rewarded answer is likelier
    assert after[1] < before[1] and after[2] < before[2]  # the unrewarded ones less likely


@pytest.mark.skipif(not SPIDER.exists(), reason="Spider data not on this machine")
def test_grpo_runs_on_a_spider_database_and_resumes(tok: Any, tmp_path: Path) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text("".join(SPIDER.read_text().splitlines(keepends=True)[:3]))
    questions = read_questions(data)
    cfg = GrpoConfig(output=str(tmp_path / "out"), group=3, steps=2, max_new_tokens=6,
                     save_every=1)
    sql_words = AnswerVocab(tok, ["▁SELECT", "▁count", "▁FROM", "▁WHERE"])
    first = grpo(cfg, policy_of(tok), tok, questions, SPIDER_DBS, "question-first",
                 say=lambda _: None, answer_vocab=sql_words)
    assert first["steps"] == 2 and first["status"] == "finished"
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 2
    more = GrpoConfig(**{**cfg.__dict__, "steps": 3, "resume": True})
    said: list[str] = []
    again = grpo(more, policy_of(tok), tok, questions, SPIDER_DBS, "question-first",
                 say=said.append, answer_vocab=sql_words)
    assert said[0].startswith("resumed from") and said[0].endswith("at step 2")
    assert again["steps"] == 3 and again["history"][:2] == first["history"]


def test_answers_are_drawn_and_scored_over_the_answer_vocabulary(tok: Any) -> None:
    """The draw never leaves the rows the decoder would choose among, and the log-probabilities
    are those of that softmax: the whole vocabulary's, renormalised over the rows."""
    policy = policy_of(tok)
    prompt_text = build_prompt("How many singers are there?",
                               'CREATE TABLE "singer" ("id" int, "name" text);')
    prompt = tok(prompt_text)["input_ids"]
    stops = sorted(stop_ids_for(policy, tok))
    vocab = AnswerVocab(tok, ["▁SELECT", "▁count", "▁FROM"])
    rows = torch.tensor(vocab.for_prompt(prompt_text, prompt, also=stops))
    assert len(rows) < 2_000  # of 262k: the restriction is real
    torch.manual_seed(0)
    answers = draw(policy, prompt, 6, 1.0, 8, stops, rows)
    allowed = set(rows.tolist())
    assert all(t in allowed for a in answers for t in a)
    torch.manual_seed(0)
    anywhere = draw(policy, prompt, 6, 1.0, 8, stops)
    assert any(t not in allowed for a in anywhere for t in a)  # the random model strays

    with torch.no_grad():
        over_rows, mask = answer_logprobs(policy, prompt, answers, tok.pad_token_id, rows)
        full, _ = answer_logprobs(policy, prompt, answers, tok.pad_token_id)
        # the first answer token's softmax over the rows, from the whole vocabulary's logits
        logits = policy(input_ids=torch.tensor([prompt])).logits[0, -1].float()
    first = torch.tensor([a[0] for a in answers])
    renormalised = logits.log_softmax(-1)[first] - logits.log_softmax(-1)[rows].logsumexp(-1)
    torch.testing.assert_close(over_rows[:, 0], renormalised, atol=1e-4, rtol=1e-4)
    assert bool((over_rows[:, 0] > full[:, 0]).all())  # less mass to share: likelier
    assert mask.sum() == sum(len(a) for a in answers)


def full_forward_logprobs(policy: torch.nn.Module, prompt: list[int], answers: list[list[int]],
                          pad_id: int) -> torch.Tensor:
    """Each answer's token log-probabilities the plain way: prompt and answer read together,
    one row each, the whole vocabulary's softmax (what `answer_logprobs` must equal)."""
    out = []
    for a in answers:
        logits = policy(input_ids=torch.tensor([prompt + a])).logits[0, len(prompt) - 1 : -1]
        out.append(logits.float().log_softmax(-1).gather(-1, torch.tensor(a)[:, None])[:, 0])
    return torch.nn.utils.rnn.pad_sequence(out, batch_first=True)


def test_the_prompt_read_once_gives_the_log_probabilities_and_gradients_of_a_full_read(
        tok: Any) -> None:
    """The prompt is read once and its cache shared by the answers: the same log-probabilities,
    and the same LoRA gradient, as reading prompt and answer together for each answer; with a
    prompt longer than the sliding window (64 in the tiny Gemma 3), so the windowed layers'
    cut cache is exercised too."""
    policy = policy_of(tok)
    context = " ".join(f'CREATE TABLE "t{i}" ("id" int, "name" text);' for i in range(12))
    prompt = tok(build_prompt("How many singers are there?", context))["input_ids"]
    assert len(prompt) > 64
    answers = [tok(text, add_special_tokens=False)["input_ids"] for text in (
        " SELECT count(*) FROM t1", " SELECT name FROM t2 WHERE id = 3", " SELECT id")]
    lora = [p for n, p in policy.named_parameters() if "lora_" in n]

    def grads(logp: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        policy.zero_grad()
        ((logp * mask).sum(1) * torch.tensor([1.0, -0.5, 0.25])).sum().backward()
        return [p.grad.clone() for p in lora]

    shared, mask = answer_logprobs(policy, prompt, answers, tok.pad_token_id)
    full = full_forward_logprobs(policy, prompt, answers, tok.pad_token_id)
    torch.testing.assert_close(shared * mask, full, atol=1e-4, rtol=1e-4)
    for a, b in zip(grads(shared, mask), grads(full, (full != 0).float()), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)


def test_a_draw_follows_the_model(tok: Any) -> None:
    """The draw's tokens are the model's: at a temperature near 0 each answer is the greedy
    continuation of a full forward, and answers of one draw stop on their own (an answer
    leaving the batch does not disturb the others)."""
    policy = policy_of(tok)
    prompt = tok(build_prompt("How many singers are there?",
                              'CREATE TABLE "singer" ("id" int, "name" text);'))["input_ids"]
    stops = sorted(stop_ids_for(policy, tok))
    torch.manual_seed(0)
    answers = draw(policy, prompt, 3, 1e-4, 12, stops)
    greedy = list(prompt)
    with torch.no_grad():
        for _ in range(12):
            t = int(policy(input_ids=torch.tensor([greedy])).logits[0, -1].argmax())
            if t in stops:
                break
            greedy.append(t)
    assert answers == [greedy[len(prompt):]] * 3


@pytest.mark.skipif(not SPIDER.exists(), reason="Spider data not on this machine")
def test_grpo_command_trains_from_a_supervised_adapter(tok: Any, rows_file: Path,
                                                       tmp_path: Path) -> None:
    """`gemma-sql finetune grpo` as a user runs it, after `finetune`: its adapter in, a
    loadable adapter out, `--questions` questions a step."""
    from typer.testing import CliRunner

    from tui.cli import app

    runner = CliRunner()
    base, sft, out = tmp_path / "base", tmp_path / "sft", tmp_path / "grpo"
    tiny_gemma(tok).save_pretrained(base)
    tok.save_pretrained(base)
    trained = runner.invoke(app, [
        "finetune", "--base", str(base), "--quant", "none", "--data", str(rows_file),
        "--output", str(sft), "--max-steps", "1", "--batch-size", "2", "--lora-r", "4",
        "--no-gradient-checkpointing"])
    assert trained.exit_code == 0, trained.output
    data = tmp_path / "q.jsonl"
    soccer = next(line for line in SPIDER.read_text().splitlines(keepends=True)
                  if '"soccer_1"' in line)  # its database is not under SPIDER_DBS
    data.write_text("".join(SPIDER.read_text().splitlines(keepends=True)[:4]) + soccer)
    result = runner.invoke(app, [
        "finetune", "grpo", str(data), "--db-root", str(SPIDER_DBS), "--adapter", str(sft),
        "--output", str(out), "--steps", "2", "--questions", "2", "--group", "2",
        "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 questions whose database is not under --db-root" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["config"]["questions"] == 2
    assert (out / "adapter_model.safetensors").is_file()
    assert (out / "answer_vocab.json").read_text() == (sft / "answer_vocab.json").read_text()
