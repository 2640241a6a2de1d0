"""Q-LoRA fine-tuning of Gemma for text-to-SQL: the loop behind `gemma-sql finetune`.

    # the original recipe: Gemma 2 2B, 4-bit NF4, on a CUDA GPU, gretel data
    gemma-sql finetune --base google/gemma-2-2b-it --data gretelai/synthetic_text_to_sql

    # the offline model, on CPU: plain bf16 LoRA is faster there than 4-bit
    gemma-sql finetune prepare-spider --source PATH/spider_train.jsonl --db-root PATH/dbs
    gemma-sql finetune --base gemma-3-270m-sql --quant none --data runs/spider/train.jsonl

    # several GPUs, data-parallel (one process a GPU; the same command otherwise)
    torchrun --nproc_per_node 4 -m finetune.cli --base google/gemma-2-2b-it ...
    accelerate launch -m finetune.cli --base google/gemma-2-2b-it ...
    # a base that does not fit one GPU: FSDP-QLoRA (finetune/sharding.py)
    accelerate launch --config_file finetune/accelerate/fsdp_qlora.yaml -m finetune.cli ...

Under torchrun/accelerate (WORLD_SIZE > 1) each process takes every WORLD_SIZE-th batch and
gradients are averaged by torch DistributedDataParallel, or with --parallel fsdp by FSDP2,
which also shards the weights; rank 0 alone logs and saves.

`train` reads top to bottom (nanoGPT's shape): set up, data, model, the loop (`run_steps`),
outputs. The model side is finetune/lora.py, resuming finetune/checkpoint.py, what a run leaves
behind finetune/outputs.py, the loss (by hand: the libraries do it badly here) finetune/loss.py.
"""

from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetune.checkpoint import CHECKPOINT, TrainState, load_checkpoint, save_checkpoint
from finetune.config import TrainConfig
from finetune.data import (
    IGNORE,
    Tokenized,
    collate,
    data_hash,
    length_batches,
    load_examples,
    tokenize_all,
)
from finetune.lora import add_lora, load_base, load_init_adapter, read_init_adapter
from finetune.loss import AnswerLoss, answer_rows, get_lr
from finetune.outputs import finish
from finetune.sharding import (
    PARALLEL_MODES,
    FsdpSettings,
    fully_shard_loss,
    gather_adapter,
    gather_optimizer,
    gradient_sync_off,
    launched_with_fsdp,
    launcher_settings,
)
from model.llm.decoding import drafts, vocab
from model.llm.decoding.engine import stop_ids_for
from model.llm.decoding.vocab import AnswerVocab
from model.llm.prompting.prompt import LAYOUTS, write_layout

Batch = dict[str, torch.Tensor]


# --- setup ---------------------------------------------------------------------------------


@dataclass
class Run:
    """This process's place in a run: its config, device and rank among the data-parallel ones."""

    cfg: TrainConfig
    device: torch.device
    world: int
    rank: int
    log: Callable[[str], None]  # says nothing on ranks other than 0
    fsdp: FsdpSettings | None = None  # sharded by FSDP2 (several processes, --parallel fsdp)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def out(self) -> Path:
        return Path(self.cfg.output)


def pick_device(name: str, local_rank: int) -> torch.device:
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def start(cfg: TrainConfig, say: Callable[[str], None]) -> Run:
    """Device, process group (torchrun/accelerate set WORLD_SIZE, RANK, LOCAL_RANK), seeds."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg.device, local_rank)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    fsdp = launcher_settings() if world > 1 and cfg.parallel == "fsdp" else None
    return Run(cfg, device, world, rank, say if rank == 0 else (lambda _: None), fsdp)


class MicroBatches:
    """This rank's micro-batches on its device, epochs concatenated, in an order fixed by the
    seed: the k-th is the same after a resume."""

    def __init__(self, data: list[Tokenized], pad_id: int, run: Run,
                 rows: Callable[[list[Tokenized]], tuple[torch.Tensor, torch.Tensor]] | None
                 = None) -> None:
        self.data, self.pad_id, self.run, self.rows = data, pad_id, run, rows
        self.lengths = [len(t) for t in data]
        cfg = run.cfg
        self.per_epoch = len(length_batches(self.lengths, cfg.batch_size, cfg.seed, 0)) // run.world
        self._order: dict[int, list[list[int]]] = {}  # the current epoch's only

    def __getitem__(self, k: int) -> Batch:
        epoch, i = divmod(k, self.per_epoch)
        if epoch not in self._order:
            cfg, run = self.run.cfg, self.run
            self._order.clear()
            self._order[epoch] = length_batches(self.lengths, cfg.batch_size, cfg.seed,
                                                epoch)[run.rank::run.world]
        items = [self.data[j] for j in self._order[epoch][i]]
        batch = collate(items, self.pad_id, self.run.cfg.pad_to)
        if self.rows is not None:
            batch["rows"], batch["allowed"] = self.rows(items)
        return {name: t.to(self.run.device) for name, t in batch.items()}


def lora_model(model: nn.Module, cfg: TrainConfig, init_weights: dict[str, torch.Tensor] | None,
               device: torch.device | None) -> nn.Module:
    """LoRA on all linear projections (unless the model has it already), in train mode; on
    `device` (None: FSDP moves each process's shards there)."""
    if not hasattr(model, "peft_config"):
        model = add_lora(model, cfg)
        if init_weights is not None:  # a resumed checkpoint overrides it, being later
            load_init_adapter(model, init_weights, cfg.init_adapter)
    if cfg.quant == "none" and device is not None:
        model.to(device)
    model.train()
    return model


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig, device: torch.device,
                   sharded: bool = False) -> torch.optim.Optimizer:
    # under FSDP the parameters are DTensor shards (the state is 1/N already): torch's AdamW,
    # which takes them; bitsandbytes' paged 8-bit AdamW is not known to (PEFT's FSDP docs)
    if device.type == "cuda" and not sharded:
        import bitsandbytes as bnb

        # paged 8-bit AdamW: optimizer state in 8 bits, paged to CPU under memory pressure
        return bnb.optim.PagedAdamW8bit(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def answer_loss(model: nn.Module, run: Run) -> nn.Module:
    """AnswerLoss, wrapped by DDP or sharded by FSDP2 when several processes train (either
    wraps the loss module). Build the optimizer after: FSDP replaces the parameters."""
    loss_fn: nn.Module = AnswerLoss(model)
    if run.fsdp is not None:
        loss_fn = fully_shard_loss(loss_fn, model, run.device, run.fsdp)
    elif run.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [run.device.index] if run.device.type == "cuda" else None
        loss_fn = DistributedDataParallel(loss_fn, device_ids=device_ids)
    return loss_fn


# --- the run -------------------------------------------------------------------------------


def refuse_output(out: Path, resume: bool) -> None:
    """A ValueError when `out` cannot take this run: a file, or a folder holding another run
    (unless resuming it). Only the first process looks: the others start as it creates it."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file, not a folder; choose another --output")
    if not resume and out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out}: holds files already; --resume goes on from its checkpoint, "
                         "or choose another --output")


def train(
    cfg: TrainConfig,
    model: nn.Module | None = None,
    tokenizer: Any = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train; returns the metrics written to OUT/metrics.json.

    `model`/`tokenizer` may be given (tests pass a tiny model); otherwise `cfg.base` loads.
    """
    if cfg.prompt_layout not in LAYOUTS:
        raise ValueError(f"prompt layout must be {' or '.join(LAYOUTS)}, not {cfg.prompt_layout!r}")
    if cfg.parallel not in PARALLEL_MODES:
        raise ValueError(f"parallel must be {' or '.join(PARALLEL_MODES)}, not {cfg.parallel!r}")
    if launched_with_fsdp():  # accelerate launch with an FSDP config: it says how to shard
        cfg = replace(cfg, parallel="fsdp")
    refuse_output(Path(cfg.output), cfg.resume)
    run = start(cfg, say)
    init_weights = read_init_adapter(cfg) if cfg.init_adapter else None

    # data: rows -> prompt/answer in THE prompt format -> tokens (bad rows counted); read
    # before the output directory is made, so that bad data leaves nothing behind
    examples, report = load_examples(cfg.data)
    if cfg.limit:
        examples = examples[: cfg.limit]
    if cfg.kept:  # the model's own right answers (finetune sample), toward its wrong ones
        from finetune.sample import mix_kept

        gold = len(examples)
        examples = mix_kept(examples, Path(cfg.kept), cfg.kept_weight)
        report.added = len(examples) - gold
    run.out.mkdir(parents=True, exist_ok=True)
    if model is None:
        model, tokenizer = load_base(cfg, run.device, run.log)
    data = tokenize_all(tokenizer, examples, cfg.max_length, report, cfg.prompt_layout)
    run.log(f"data: {report.line()}")
    if not data:
        raise ValueError(f"{cfg.data}: no usable examples")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = None
    if cfg.answer_vocab:  # train the softmax the decoder uses: this data's answer tokens
        answer_ids = sorted({t for d in data for t in d.labels if t != IGNORE})
        answer_vocab = AnswerVocab(
            tokenizer, inherited_pieces(cfg) + tokenizer.convert_ids_to_tokens(answer_ids))
        stops = stop_ids_for(model, tokenizer)
        rows = partial(answer_rows, vocab=answer_vocab, stop_ids=stops)
    batches = MicroBatches(data, pad_id, run, rows)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * batches.per_epoch / cfg.grad_accum))

    # model: LoRA, the loss (DDP/FSDP), its optimizer; then the checkpoint to resume from, if any
    model = lora_model(model, cfg, init_weights, None if run.fsdp else run.device)
    loss_fn = answer_loss(model, run)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg, run.device, sharded=run.fsdp is not None)
    state = TrainState()
    if cfg.resume and (run.out / CHECKPOINT).exists():
        state = load_checkpoint(run.out, model, opt, sharded=run.fsdp is not None)
        run.log(f"resumed from {run.out / CHECKPOINT} at step {state.step}")
    run.log(f"training {sum(p.numel() for p in params) / 1e6:.2f}M LoRA parameters on "
            f"{run.device}: {len(data)} examples, "
            f"{total} steps of {cfg.batch_size * cfg.grad_accum * run.world} examples")

    run_steps(run, state, total, model, opt, loss_fn, batches)

    metrics: dict[str, Any] = {}
    adapter, optimizer = gather_shards(run, model, opt)
    if run.main:
        answers = [[t for t in d.labels if t != IGNORE] for d in data]
        metrics = save_run(run, state, model, opt, tokenizer, answers, {
            "examples": len(data), "data_hash": data_hash(examples), "data_report": report.line(),
            "device": str(run.device), "world_size": run.world, "total_steps": total,
            "parallel": cfg.parallel if run.world > 1 else "none",
        }, adapter, optimizer)
    if run.world > 1:
        import torch.distributed as dist

        # DDP's reducer (or FSDP's state) first: freed after its process group, it could hang
        # the process at exit (seen in 1 of ~5 two-process CPU runs, tests/finetune/test_train.py)
        del loss_fn
        dist.destroy_process_group()
    return metrics


def run_steps(run: Run, state: TrainState, total: int, model: nn.Module,
              opt: torch.optim.Optimizer, loss_fn: nn.Module, batches: MicroBatches) -> None:
    """Optimizer steps until `total`, the time limit, Ctrl+C or SIGTERM; sets state.status."""
    from tqdm import tqdm

    cfg = run.cfg
    started = time.perf_counter() - state.elapsed
    stop_at = started + cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    with sigterm_as_ctrl_c(), tqdm(total=total, initial=state.step, disable=not run.main,
                                   dynamic_ncols=True, unit="step", desc="finetune") as bar:
        try:
            while state.step < total:
                t0 = time.perf_counter()
                lr = get_lr(state.step, cfg, total)
                step_batches = [batches[state.micro + j] for j in range(cfg.grad_accum)]
                loss, tokens = optimizer_step(run, opt, loss_fn, step_batches, lr)
                dt = time.perf_counter() - t0
                record(state, cfg, loss, lr, tokens, dt, time.perf_counter() - started)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens / dt:.0f}")
                bar.update(1)
                # checkpoint every N steps; stop at the time limit
                if cfg.save_every and state.step % cfg.save_every == 0:
                    adapter, optimizer = gather_shards(run, model, opt)
                    if run.main:
                        save_checkpoint(run.out, model, opt, state, cfg, adapter, optimizer)
                if _agree(time.perf_counter() > stop_at, run.world, run.device):
                    state.status = "stopped at the time limit"
                    run.log(f"\ntime limit of {cfg.max_minutes:g} min reached at step {state.step}")
                    break
            else:
                state.status = "finished"
        except KeyboardInterrupt:
            state.status = "interrupted"
            run.log(f"\ninterrupted at step {state.step}; saving (resume with --resume)")
    state.elapsed = time.perf_counter() - started


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (kill, a batch scheduler, a background job that ignores SIGINT) saves like Ctrl+C;
    the caller's handler again after (tests and benches call train in-process)."""
    if threading.current_thread() is not threading.main_thread():  # signals are main-thread only
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def optimizer_step(run: Run, opt: torch.optim.Optimizer, loss_fn: nn.Module,
                   batches: list[Batch], lr: float) -> tuple[float, int]:
    """Forward/backward over the micro-batches, averaging over all their answer tokens; clip,
    step, zero. Returns the step's loss and the tokens it saw on every rank."""
    for group in opt.param_groups:
        group["lr"] = lr
    n_answer = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
    loss_total = 0.0
    for j, b in enumerate(batches):
        last = j == len(batches) - 1
        # under DDP/FSDP, gradients are averaged across ranks once, after the last micro-batch
        sync = gradient_sync_off(loss_fn) if run.world > 1 and not last else nullcontext()
        with sync:
            loss_sum, _ = loss_fn(b["input_ids"], b["attention_mask"], b["labels"],
                                  b.get("rows"), b.get("allowed"))
            (loss_sum / n_answer).backward()
        loss_total += loss_sum.item()
    if run.cfg.grad_clip:
        # under FSDP the gradients are DTensor shards: torch's clip takes the global norm
        params = [p for group in opt.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, run.cfg.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches) * run.world
    return loss_total / n_answer, tokens


def record(state: TrainState, cfg: TrainConfig, loss: float, lr: float, tokens: int, dt: float,
           elapsed: float) -> None:
    """Count the step; every log_every steps (and the first) add it to the history."""
    state.step += 1
    state.micro += cfg.grad_accum
    state.tokens += tokens
    state.elapsed = elapsed
    if state.step % cfg.log_every == 0 or state.step == 1:
        state.history.append({"step": state.step, "loss": round(loss, 5), "lr": lr,
                              "tokens": tokens, "tokens_per_second": round(tokens / dt, 1),
                              "elapsed": round(state.elapsed, 2),
                              "cpu_seconds": round(time.process_time(), 2)})


def _agree(flag: bool, world: int, device: torch.device) -> bool:
    """Under DDP every rank must stop at the same step: stop when any rank wants to."""
    if world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_shards(run: Run, model: nn.Module, opt: torch.optim.Optimizer
                  ) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any] | None]:
    """Under FSDP, the whole adapter weights and optimizer state for rank 0 to save (every rank
    must call this: it all-gathers); (None, None) otherwise: the model has them whole."""
    if run.fsdp is None:
        return None, None
    return gather_adapter(model), gather_optimizer(model, opt)


def inherited_pieces(cfg: TrainConfig) -> list[str]:
    """The answer vocabulary of the adapter trained further, kept: training on a few questions
    must not narrow what the decoder may write for all the others."""
    return vocab.pieces(Path(cfg.init_adapter)) if cfg.init_adapter else []


def save_run(run: Run, state: TrainState, model: nn.Module, opt: torch.optim.Optimizer,
             tokenizer: Any, answers: list[list[int]], extra: dict[str, Any],
             adapter: dict[str, torch.Tensor] | None = None,
             optimizer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The last checkpoint, the answers' vocabulary and drafts (the training answers' token
    ids), the prompt layout and finish's outputs;
    upload with --push-to-hub. Returns the metrics. `adapter`, `optimizer`: see gather_shards."""
    cfg = run.cfg
    save_checkpoint(run.out, model, opt, state, cfg, adapter, optimizer)
    vocab.write(run.out, tokenizer, (t for a in answers for t in a),  # decoding's rows
                inherited_pieces(cfg))
    drafts.write(run.out, tokenizer, answers)  # guesses greedy decoding checks ahead
    write_layout(run.out, cfg.prompt_layout)
    metrics = finish(run.out, model, cfg, state, extra, adapter)
    run.log(f"{state.status}: {state.step} steps, final loss {metrics['final_loss']:.4f}, "
            f"{metrics['tokens_per_second']:.0f} tokens/s; adapter in {run.out}")
    if cfg.push_to_hub:
        from finetune.export import ExportError, push_adapter

        try:
            run.log(f"uploaded: {push_adapter(run.out, cfg.push_to_hub)}")
        except ExportError as e:
            run.log(f"not uploaded: {e}")
    return metrics
