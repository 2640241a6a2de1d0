"""What an adapter folder holds, named once: `gemma-sql finetune` writes these files, loading
reads them, `finetune merge` and the shipped adapter (model/adapters/<name>/) carry them.

A folder is an adapter when it holds `REQUIRED` (PEFT's own two files); the rest are ours and
optional: a model without them decodes over the whole vocabulary, one token a pass, in the
seed's prompt layout.
"""

from __future__ import annotations

CONFIG = "adapter_config.json"  # PEFT's: rank, alpha, target modules, the base model's name
WEIGHTS = "adapter_model.safetensors"  # PEFT's: the LoRA weights (bf16)
VOCAB = "answer_vocab.json"  # the tokens answers may use (model.llm.decoding.vocab)
DRAFTS = "answer_drafts.json"  # guesses greedy decoding checks ahead (model.llm.decoding.drafts)
LAYOUT = "prompt_layout.json"  # the prompt layout trained on (model.llm.prompting.prompt)
CARD = "README.md"  # the model card: data, steps, loss, the command that made it

REQUIRED = (CONFIG, WEIGHTS)
# What decoding reads beside the weights: a merged model keeps them (finetune/export.py).
DECODING = (VOCAB, DRAFTS, LAYOUT)
# What a shipped adapter folder holds (a run's folder also has metrics, the loss curve and its
# checkpoint); the layout file only when it is not the seed's.
SHIPPED = (*REQUIRED, VOCAB, DRAFTS, CARD)
