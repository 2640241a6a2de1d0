"""A tiny random Gemma (3 or 2) and a tiny tokenizer trained on the spot: real code paths,
CPU seconds, no download."""

from __future__ import annotations

from typing import Any

from finetune.data import Example

ROWS = [
    Example("How many singers are there?", 'CREATE TABLE "singer" ("id" int, "name" text);',
            "SELECT count(*) FROM singer"),
    Example("List the names of all singers.", 'CREATE TABLE "singer" ("id" int, "name" text);',
            "SELECT name FROM singer"),
    Example("What is the oldest age of a head?", 'CREATE TABLE "head" ("id" int, "age" real);',
            "SELECT max(age) FROM head"),
    Example("Show heads older than 56.", 'CREATE TABLE "head" ("id" int, "age" real);',
            "SELECT * FROM head WHERE age > 56"),
    Example("Count the departments.", 'CREATE TABLE "department" ("id" int, "name" text);',
            "SELECT count(*) FROM department"),
    Example("Name every department.", 'CREATE TABLE "department" ("id" int, "name" text);',
            "SELECT name FROM department"),
]

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]


def tiny_tokenizer(vocab_size: int = 600) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from model.llm.prompting.prompt import training_text

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = ["".join(training_text(e.question, e.context, e.sql)) for e in ROWS]
    tok.train_from_iterator(
        texts, trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    )
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )


def tiny_gemma(tokenizer: Any, kind: str = "gemma3", seed: int = 0) -> Any:
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    common: dict[str, Any] = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if kind == "gemma2":
        config = Gemma2Config(**common, final_logit_softcapping=30.0,
                              attn_implementation="eager")
        model = Gemma2ForCausalLM(config)
    else:
        config = Gemma3TextConfig(**common, sliding_window=64)
        model = Gemma3ForCausalLM(config)
    return model.to(torch.bfloat16)


def data_parallel_rank(rank: int, world: int, port: int, rows_file: str, out: str,
                       results: Any, overrides: dict[str, Any] | None = None,
                       env: dict[str, str] | None = None) -> None:
    """One process of a CPU data-parallel run (gloo), as torchrun (with `env`: accelerate
    launch) would start it: trains the tiny Gemma (`overrides`: a `base` directory loads from
    disk), then reports rank 0's metrics, its own final LoRA weights (whole: gathered under
    FSDP) and how the loss module was wrapped."""
    import faulthandler
    import os

    faulthandler.dump_traceback_later(100, exit=True)  # a hung rank shows where, and ends
    os.environ.update(env or {})
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import finetune.train as train_mod
    from finetune.config import TrainConfig

    wrapping: dict[str, Any] = {}
    real_answer_loss = train_mod.answer_loss

    def recorded_answer_loss(model: Any, run: Any) -> Any:
        loss_fn = real_answer_loss(model, run)
        wrapping["loss_module"] = type(loss_fn).__name__
        # each base weight: (rows this rank holds, rows in all, storage dtype)
        wrapping["base_weights"] = [
            (tuple(getattr(p, "_local_tensor", p).shape), tuple(p.shape), str(p.dtype))
            for n, p in model.named_parameters() if n.endswith("q_proj.base_layer.weight")]
        return loss_fn

    train_mod.answer_loss = recorded_answer_loss
    settings = dict(base="tiny", quant="none", data=rows_file, output=out, batch_size=1,
                    grad_accum=1, epochs=1.0, lr=5e-3, warmup_steps=1, save_every=0,
                    lora_r=4, lora_alpha=8, gradient_checkpointing=False, threads=1)
    settings.update(overrides or {})
    config = TrainConfig(**settings)
    tok = tiny_tokenizer()
    model = tiny_gemma(tok) if config.base == "tiny" else None
    lora: dict[str, list[float]] = {}
    real_gather_shards = train_mod.gather_shards

    def recorded_gather_shards(run: Any, trained: Any, opt: Any) -> Any:
        from finetune.sharding import gather_adapter

        # the whole LoRA weights on every rank (all-gathered under FSDP), as they are saved
        lora.update({n: p.float().flatten().tolist()
                     for n, p in gather_adapter(trained).items() if "lora_" in n})
        return real_gather_shards(run, trained, opt)

    train_mod.gather_shards = recorded_gather_shards
    metrics = train_mod.train(config, model, tok, say=lambda _: None)
    results.put((rank, {k: v for k, v in metrics.items() if k != "history"}, lora, wrapping,
                 [h["loss"] for h in metrics.get("history", [])]))


def run_two_ranks(rows_file: Any, out: Any, overrides: dict[str, Any] | None = None,
                  env: dict[str, str] | None = None) -> dict[int, tuple[Any, ...]]:
    """Two data_parallel_rank processes on CPU (gloo); each rank's report, by rank."""
    import socket
    import time

    import torch.multiprocessing as mp

    with socket.socket() as s:  # a free port for the process group
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.get_context("spawn").Queue()
    ranks = mp.start_processes(data_parallel_rank,
                               args=(2, port, str(rows_file), str(out), results, overrides, env),
                               nprocs=2, join=False, start_method="spawn")
    try:
        # read before joining: a process exits only once what it queued has been read
        reports = {r[0]: r[1:] for r in (results.get(timeout=120) for _ in range(2))}
        deadline = time.monotonic() + 60
        while not ranks.join(timeout=5):  # True once every rank has exited
            assert time.monotonic() < deadline, "a rank did not exit"
    finally:
        for process in ranks.processes:
            process.kill()
    return reports
