"""Reinforcement with an execution reward (GRPO): `gemma-sql finetune grpo`.

Each step takes the next `questions` training questions (a seeded order: the same after
`--resume`), asks each as `ask` asks first (`finetune.sample.asked_context`), draws `group`
answers from the current policy, runs them read-only on the question's database and scores them
(`finetune.reward`: 1 for the gold's result, partial credit, 0 for an error or a write). The
advantage of an answer is its reward against its group's, (r - mean) / (std + eps); a group
whose answers all score the same teaches nothing and is skipped (no forward, no backward). The
loss of an answer is the mean over its tokens of

    -(A * exp(logp - logp.detach()) - beta * KL),   KL = exp(ref - logp) - (ref - logp) - 1

(DeepSeekMath's GRPO, one update a draw, so the ratio is 1 and only its gradient counts; KL the
k3 estimate against the reference, the supervised adapter the run started from, merged and
frozen). Both are over the tokens the decoder chooses among for the prompt (the starting
adapter's answer vocabulary, `model.llm.decoding.vocab`), and the answers are drawn from that
softmax too: what is rewarded is what `ask` would write. Only the LoRA weights train.
OUT/checkpoint (adapter safetensors, optimizer state read back with
torch.load(weights_only=True), step, history) is written every `save_every` steps, at the end
and on Ctrl+C/SIGTERM; the final adapter sits in OUT beside the starting adapter's answer
vocabulary, drafts and prompt layout, so `--adapter OUT` loads it in the app.

TRL's GRPOTrainer does the same sum (bench/grpo.py compares the two on the tiny model), but
it would not draw with `ask`'s prompts over the answer vocabulary, nor read a prompt once a
group.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetune.data import spider_db_path
from finetune.eval import GoldError
from finetune.loss import softcapped
from finetune.reward import Gold, reward
from finetune.sample import Question, asked_context
from model.llm.decoding import drafts, vocab
from model.llm.decoding.vocab import AnswerVocab
from model.llm.prompting.prompt import LAYOUT_FILE, build_prompt
from model.llm.sql.extract import extract_sql
from model.llm.weights.registry import causal_lm
from model.sqlite.db import Database, DatabaseError

CHECKPOINT = "checkpoint"
# what load_engine reads next to an adapter besides its weights (decoding.vocab, drafts, layout)
COMPANIONS = (vocab.FILE, drafts.FILE, LAYOUT_FILE)


@dataclass
class GrpoConfig:
    output: str = "runs/grpo"
    group: int = 8  # answers drawn a question
    questions: int = 1  # questions a step
    steps: int = 100
    lr: float = 1e-5
    beta: float = 0.04  # weight of the KL term to the reference
    temperature: float = 1.0
    max_new_tokens: int = 128
    grad_clip: float = 1.0
    save_every: int = 10
    max_minutes: float = 0.0
    seed: int = 0
    resume: bool = False


@dataclass
class GrpoState:
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    status: str = "running"


# --- one step ------------------------------------------------------------------------------


def read_prompt(model: nn.Module, prompt: list[int], n: int) -> tuple[torch.Tensor, Any]:
    """The prompt read once for `n` answers: its last position's hidden state (n, hidden),
    which scores each answer's first token, and its KV cache repeated n times. Reading it once
    rather than once an answer is most of a step's saving: the prompt (schema, values, question:
    ~700 tokens) is ten times an answer. Differentiable when grad is on: the answers' gradient
    flows back through the cache into the prompt's positions."""
    device = next(model.parameters()).device
    out = causal_lm(model).get_decoder()(input_ids=torch.tensor([prompt], device=device),
                                         use_cache=True)
    cache = out.cache
    cache.batch_repeat_interleave(n)
    return out.last_hidden_state[:, -1].expand(n, -1), cache


def output_rows(model: nn.Module, rows: torch.Tensor | None) -> torch.Tensor:
    """The output layer's weight, only its `rows` when given."""
    weight = causal_lm(model).get_output_embeddings().weight
    return weight if rows is None else weight.index_select(0, rows.to(weight.device))


def answer_logprobs(model: nn.Module, prompt: list[int], answers: list[list[int]],
                    pad_id: int, rows: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of each answer's tokens after `prompt` (G, T) and their mask (G, T):
    the prompt read once (`read_prompt`), then the answers in one batched forward after its
    cache; the output layer applied at the answer positions only (its 262k rows at every
    position would be most of the memory), and only its `rows` (sorted ids, every answer token
    among them) when given: the softmax the decoder draws from."""
    width = max(len(a) for a in answers)
    device = next(model.parameters()).device
    ids = torch.full((len(answers), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, a in enumerate(answers):
        ids[row, : len(a)] = torch.tensor(a)
        mask[row, : len(a)] = 1
    ids, mask = ids.to(device), mask.to(device)
    lm = causal_lm(model)
    last, cache = read_prompt(model, prompt, len(answers))
    seen = torch.cat([torch.ones(len(answers), len(prompt), dtype=mask.dtype, device=device),
                      mask], dim=1)
    after = lm.get_decoder()(input_ids=ids, attention_mask=seen, cache=cache,
                             use_cache=True).last_hidden_state
    hidden = torch.cat([last[:, None], after[:, :-1]], dim=1)  # position t predicts token t
    target = ids
    if rows is not None:
        rows = rows.to(device)
        # padding's ids need not be rows: any in-range index, masked out below
        target = torch.searchsorted(rows, target).clamp(max=len(rows) - 1)
    logits = softcapped(lm, torch.nn.functional.linear(hidden, output_rows(model, rows)).float())
    logp = logits.gather(-1, target[..., None]).squeeze(-1) - logits.logsumexp(-1)
    return logp, mask.float()


def advantages(rewards: list[float]) -> torch.Tensor:
    r = torch.tensor(rewards, dtype=torch.float32)
    return (r - r.mean()) / (r.std() + 1e-4)


def grpo_loss(policy: nn.Module, ref: nn.Module, prompt: list[int], answers: list[list[int]],
              rewards: list[float], beta: float, pad_id: int,
              rows: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """The group's loss (see the module's docstring) and its mean KL to the reference, over
    the softmax of `rows` (all the vocabulary when None)."""
    logp, mask = answer_logprobs(policy, prompt, answers, pad_id, rows)
    with torch.no_grad():
        ref_logp, _ = answer_logprobs(ref, prompt, answers, pad_id, rows)
    a = advantages(rewards).to(logp.device)[:, None]
    delta = ref_logp - logp
    kl = torch.exp(delta) - delta - 1
    per_token = -(torch.exp(logp - logp.detach()) * a - beta * kl)
    per_answer = (per_token * mask).sum(1) / mask.sum(1).clamp(min=1)
    mean_kl = float(((kl.detach() * mask).sum(1) / mask.sum(1).clamp(min=1)).mean())
    return per_answer.mean(), mean_kl


def draw(policy: nn.Module, prompt: list[int], n: int, temperature: float,
         max_new_tokens: int, stop_ids: list[int],
         rows: torch.Tensor | None = None) -> list[list[int]]:
    """`n` answers' token ids from the current policy (the stop token left off), each token
    drawn from the softmax over `rows` when given (the output layer applied to those rows
    only). The prompt is read once and the answers decoded together, an answer leaving the
    batch when it stops (as the engine's `sample`; transformers' `generate` would read the
    prompt once an answer, and score all 262k rows each step)."""
    lm = causal_lm(policy)
    decoder = lm.get_decoder()
    device = next(policy.parameters()).device
    stops = set(stop_ids)
    answers: list[list[int]] = [[] for _ in range(n)]
    going = list(range(n))  # the answers still being decoded, in the cache's row order
    with torch.no_grad():
        weight = output_rows(policy, rows)
        hidden, cache = read_prompt(policy, prompt, n)
        for _ in range(max_new_tokens):
            logits = softcapped(lm, torch.nn.functional.linear(hidden, weight).float())
            column = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1)[:, 0]
            tokens = column if rows is None else rows.to(device)[column]
            kept = [row for row, t in enumerate(tokens.tolist()) if t not in stops]
            for row in kept:
                answers[going[row]].append(int(tokens[row]))
            if not kept:
                break
            if len(kept) < len(going):
                cache.batch_select_indices(torch.tensor(kept, device=device))
                going, tokens = [going[row] for row in kept], tokens[kept]
            hidden = decoder(input_ids=tokens[:, None], cache=cache,
                             use_cache=True).last_hidden_state[:, -1]
    return [a or [stop_ids[0]] for a in answers]  # an empty answer still scores (0)


# --- the run -------------------------------------------------------------------------------


def reference_of(policy: nn.Module) -> nn.Module:
    """The starting policy, frozen: a copy with its adapter merged (the supervised model)."""
    ref = copy.deepcopy(policy).merge_and_unload()
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def save_checkpoint(out: Path, policy: nn.Module, opt: torch.optim.Optimizer, state: GrpoState,
                    cfg: GrpoConfig) -> None:
    """OUT/checkpoint, written beside and swapped in (a kill mid-write keeps the last one)."""
    tmp, final = out / (CHECKPOINT + ".tmp"), out / CHECKPOINT
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp)
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(
        {"step": state.step, "history": state.history, "config": asdict(cfg)}))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def load_checkpoint(out: Path, policy: nn.Module, opt: torch.optim.Optimizer) -> GrpoState:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    ckpt = out / CHECKPOINT
    set_peft_model_state_dict(policy, load_file(str(ckpt / "adapter_model.safetensors")))
    opt.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    s = json.loads((ckpt / "state.json").read_text())
    return GrpoState(s["step"], s["history"])


def grpo(cfg: GrpoConfig, policy: nn.Module, tokenizer: Any, questions: list[Question],
         db_root: Path, layout: str, start_adapter: Path | None = None,
         say: Callable[[str], None] = print,
         answer_vocab: AnswerVocab | None = None) -> dict[str, Any]:
    """Train `policy` (a PEFT model: its LoRA weights only) by GRPO on `questions`; returns the
    metrics written to OUT/metrics.json. Answers are drawn and scored over `answer_vocab`
    (default: the starting adapter's; the whole vocabulary when it has none)."""
    from model.llm.decoding.engine import stop_ids_for

    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    ref = reference_of(policy)
    params = [p for n, p in policy.named_parameters() if "lora_" in n]
    for n, p in policy.named_parameters():
        p.requires_grad_("lora_" in n)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    state = GrpoState()
    if cfg.resume and (out / CHECKPOINT).exists():
        state = load_checkpoint(out, policy, opt)
        say(f"resumed from {out / CHECKPOINT} at step {state.step}")
    order = list(range(len(questions)))
    random.Random(cfg.seed).shuffle(order)
    stop_ids = sorted(stop_ids_for(policy, tokenizer))
    if answer_vocab is None and start_adapter is not None:
        answer_vocab = AnswerVocab.read(start_adapter, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    dbs: dict[str, Database] = {}
    policy.eval()  # no dropout: the answers are scored under the policy that drew them
    started = time.perf_counter()
    from tqdm import tqdm

    from finetune.train import sigterm_as_ctrl_c

    bar = tqdm(total=cfg.steps, initial=state.step, unit="step", desc="grpo", dynamic_ncols=True)
    with sigterm_as_ctrl_c():  # a kill (a background job's end) saves like Ctrl+C
        try:
            while state.step < cfg.steps:
                t0 = time.perf_counter()
                rewards_seen: list[float] = []
                kls: list[float] = []
                opt.zero_grad(set_to_none=True)
                for j in range(cfg.questions):
                    q = questions[order[(state.step * cfg.questions + j) % len(order)]]
                    try:
                        if q.db_id not in dbs:
                            dbs[q.db_id] = Database.open(spider_db_path(db_root, q.db_id))
                        db = dbs[q.db_id]
                        gold = Gold.of(db, q.sql)
                    except (GoldError, DatabaseError, OSError):
                        continue  # a question whose gold cannot be had teaches nothing
                    context = asked_context(db, q.question, layout).text
                    prompt_text = build_prompt(q.question, context, layout)
                    prompt = tokenizer(prompt_text, add_special_tokens=True)["input_ids"]
                    rows = None if answer_vocab is None else torch.tensor(
                        answer_vocab.for_prompt(prompt_text, prompt, also=stop_ids))
                    torch.manual_seed(cfg.seed * 1_000_003 + state.step * 1_009 + j)
                    answers = draw(policy, prompt, cfg.group, cfg.temperature,
                                   cfg.max_new_tokens, stop_ids, rows)
                    texts = tokenizer.batch_decode(answers, skip_special_tokens=True)
                    rewards = [reward(db, gold, extract_sql(t)) for t in texts]
                    rewards_seen += rewards
                    if max(rewards) == min(rewards):
                        continue  # no advantage anywhere: nothing to learn from this group
                    loss, kl = grpo_loss(policy, ref, prompt, answers, rewards, cfg.beta, pad_id,
                                         rows)
                    (loss / cfg.questions).backward()
                    kls.append(kl)
                if any(p.grad is not None for p in params):
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    opt.step()
                state.step += 1
                mean_reward = sum(rewards_seen) / max(len(rewards_seen), 1)
                state.history.append({"step": state.step, "reward": round(mean_reward, 4),
                                      "kl": round(sum(kls) / len(kls), 5) if kls else 0.0,
                                      "learned_from": len(kls),
                                      "seconds": round(time.perf_counter() - t0, 2)})
                bar.update(1)
                bar.set_postfix(reward=f"{mean_reward:.2f}")
                if cfg.save_every and state.step % cfg.save_every == 0:
                    save_checkpoint(out, policy, opt, state, cfg)
                if cfg.max_minutes and time.perf_counter() - started > cfg.max_minutes * 60:
                    state.status = "stopped at the time limit"
                    break
            else:
                state.status = "finished"
        except KeyboardInterrupt:
            state.status = "interrupted"
            say(f"\ninterrupted at step {state.step}; saving (rerun with --resume)")
        finally:
            bar.close()
            for db in dbs.values():
                db.close()
    save_checkpoint(out, policy, opt, state, cfg)
    policy.save_pretrained(out)
    for name in COMPANIONS:
        if start_adapter is not None and (start_adapter / name).is_file():
            shutil.copy(start_adapter / name, out / name)
    recent = state.history[-20:]
    metrics = {"status": state.status, "steps": state.step,
               "mean_reward_last_20": (sum(h["reward"] for h in recent) / len(recent)
                                       if recent else math.nan),
               "history": state.history, "config": asdict(cfg),
               "start_adapter": str(start_adapter or "")}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    say(f"{state.status}: {state.step} steps; adapter in {out}")
    return metrics


def load_policy(adapter: Path, device: str, say: Callable[[str], None] | None = None
                ) -> tuple[nn.Module, Any]:
    """The base the adapter names, in the machine's dtype (bf16 where the hardware has it,
    fp32 otherwise; never fp16, too narrow to train in), with the adapter trainable on top."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune.lora import resolve_base
    from model.llm.weights.dtype import resolve_dtype, torch_dtype
    from model.llm.weights.progress import no_loading_bars
    from model.llm.weights.registry import adapter_base, load_tokenizer

    dtype = resolve_dtype(None, device)
    path = resolve_base(adapter_base(adapter), say)
    with no_loading_bars():
        base = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype("fp32" if dtype == "fp16" else dtype))
    policy = PeftModel.from_pretrained(base, str(adapter), is_trainable=True)
    return policy.to(device), load_tokenizer(Path(path))
