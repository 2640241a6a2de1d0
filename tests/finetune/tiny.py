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

    from model.llm.prompt import training_text

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
                       results: Any) -> None:
    """One process of a CPU data-parallel run (gloo), as torchrun would start it: trains the
    tiny Gemma, then reports rank 0's metrics and its own final LoRA weights."""
    import faulthandler
    import os

    faulthandler.dump_traceback_later(100, exit=True)  # a hung rank shows where, and ends
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from finetune.config import TrainConfig
    from finetune.train import train

    tok = tiny_tokenizer()
    model = tiny_gemma(tok)
    config = TrainConfig(base="tiny", quant="none", data=rows_file, output=out, batch_size=1,
                         grad_accum=1, epochs=1.0, lr=5e-3, warmup_steps=1, save_every=0,
                         lora_r=4, lora_alpha=8, gradient_checkpointing=False, threads=1)
    metrics = train(config, model, tok, say=lambda _: None)
    lora = {n: p.detach().float().tolist() for n, p in model.named_parameters() if "lora_" in n}
    results.put((rank, {k: v for k, v in metrics.items() if k != "history"}, lora))
