"""TrainConfig: every knob of `gemma-sql finetune`, one dataclass (no torch import here, so
the command line can build its flags from it and `--help` stays instant)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


def knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    recipe: str = knob(
        "",
        "A TOML file of these settings, by field name (e.g. finetune/recipes/"
        "gemma-3-270m-sql.toml, the shipped adapter's); flags given as well override it.",
    )
    # model
    base: str = knob(
        "google/gemma-2-2b-it",
        "Base model: hub id, local directory, or gemma-3-270m-sql (the offline base).",
    )
    quant: str = knob("nf4", "Base weights: nf4 (4-bit NF4, double quant, bf16 compute) or none.")
    lora_r: int = knob(16, "LoRA rank (all linear projections).")
    lora_alpha: int = knob(32, "LoRA alpha.")
    lora_dropout: float = knob(0.05, "LoRA dropout.")
    init_adapter: str = knob(
        "", "Start from this LoRA adapter (a directory) instead of a fresh one: continue training."
    )
    gradient_checkpointing: bool = knob(True, "Recompute activations in backward (less memory).")
    dtype: str = knob(
        "auto",
        "Compute dtype without --quant nf4: auto (bf16 where the machine does bf16 itself, as "
        "inference chooses; else fp32), bf16 or fp32.",
    )
    parallel: str = knob(
        "ddp",
        "Several processes (torchrun/accelerate launch): ddp (each holds the whole model) or fsdp "
        "(FSDP2: each holds 1/N of the base, for bases that do not fit one GPU; 4-bit weights "
        "stored as bf16). accelerate launch with an FSDP config means fsdp.",
    )
    # data
    data: str = knob(
        "gretelai/synthetic_text_to_sql", "Hub data set id or local .jsonl/.parquet file."
    )
    prompt_layout: str = knob(
        "question-first",
        "question-first (the seed's prompt) or context-first (the question after the schema: "
        "the app then reads a database's schema once, not for every question).",
    )
    max_length: int = knob(1024, "Longest example in tokens; longer ones are skipped.")
    pad_to: int = knob(
        32, "Pad each batch to a multiple of N tokens: few distinct shapes, flat memory on CPU."
    )
    answer_vocab: bool = knob(
        True,
        "Softmax over the tokens the decoder chooses among (the training answers' and the "
        "prompt's words), not all 262k: what is trained is what is decoded.",
    )
    limit: int = knob(0, "Use only the first N examples (0: all).")
    kept: str = knob("", "The model's own right answers (a `finetune sample` JSONL) mixed with "
                     "--data, weighted toward the questions its greedy answer gets wrong.")
    kept_weight: int = knob(2, "Times each kept answer, and the gold, of a question the greedy "
                            "answer gets wrong is seen (a question it gets right: once).")
    # optimisation
    batch_size: int = knob(4, "Examples per micro-batch.")
    grad_accum: int = knob(1, "Micro-batches per optimizer step.")
    lr: float = knob(2e-4, "Peak learning rate.")
    min_lr_ratio: float = knob(0.1, "Final learning rate as a fraction of the peak (cosine).")
    warmup_steps: int = knob(20, "Linear warm-up steps.")
    weight_decay: float = knob(0.0, "AdamW weight decay.")
    grad_clip: float = knob(1.0, "Clip the gradient norm to this (0: off).")
    epochs: float = knob(1.0, "Passes over the data (used when max_steps is 0).")
    max_steps: int = knob(0, "Optimizer steps (0: from epochs).")
    max_minutes: float = knob(0.0, "Stop and save after this many minutes (0: no limit).")
    seed: int = knob(0, "Seed for LoRA init, data order and dropout.")
    # output
    output: str = knob("runs/finetune", "Output directory (adapter, metrics, model card).")
    save_every: int = knob(50, "Checkpoint every N steps (a crash loses at most N).")
    log_every: int = knob(1, "Record loss every N steps.")
    resume: bool = knob(False, "Continue from OUTPUT/checkpoint.")
    device: str = knob("", "cpu, cuda, cuda:1 ... (default: cuda if available).")
    threads: int = knob(0, "CPU threads for torch (0: torch's default, one a core).")
    push_to_hub: str = knob("", "Upload the adapter and its model card to this hub repo.")

    @classmethod
    def with_recipe(cls, options: dict[str, Any], given: set[str]) -> TrainConfig:
        """`options` (every field) over the recipe file they name, except the `given` ones
        (typed on the command line), which win. A bad file is a one-line ValueError."""
        import tomllib

        path = Path(options["recipe"])
        try:
            recipe = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--recipe {path}: {getattr(e, 'strerror', None) or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"--recipe {path}: not TOML ({e})") from None
        kinds = {f.name: f.type for f in fields(cls)}
        for key, value in recipe.items():
            kind = kinds.get(key)
            if kind is None or key == "recipe":
                raise ValueError(f"--recipe {path}: {key!r} is not a setting of gemma-sql finetune")
            ok = {"bool": bool, "str": str, "int": int}.get(str(kind), (int, float))
            if not isinstance(value, ok) or (kind != "bool" and isinstance(value, bool)):
                article = "an" if str(kind) == "int" else "a"
                raise ValueError(f"--recipe {path}: {key} must be {article} {kind}, not {value!r}")
        return cls(**{**options, **{k: v for k, v in recipe.items() if k not in given}})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
