"""Attention for one-token decoding steps on a CPU: two fp32 matmuls instead of SDPA.

Written by hand because PyTorch's CPU `scaled_dot_product_attention` is slow for one query
row: 0.98 ms for a 512-key sliding-window layer of the 270M (4 heads of 256, one KV head, bf16,
one thread) and 1.76 ms for 1,000 keys, against 0.10 and 0.18 ms for q·Kᵀ, softmax and ·V as
fp32 matmuls, which are also closer to an fp32 reference (max error 0.0005 vs 0.0007). Over a
step's 18 layers that is ~20 % of a decoding step on two cores.

The prompt read (many query rows) and anything unusual (training, an additive float mask, a
device other than the CPU) go to transformers' own SDPA attention unchanged. Registered
through transformers' `AttentionInterface`; `use_decode_attention` switches a loaded model.
"""

from __future__ import annotations

from typing import Any

import torch

NAME = "gemma_sql_decode"


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: query (b, heads, q, d), key and value
    (b, kv_heads, k, d), a boolean mask (b, 1, q, k) or None; returns (b, q, heads, d)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    if (length != 1 or query.device.type != "cpu" or module.training or heads % kv_heads
            or (attention_mask is not None and attention_mask.dtype != torch.bool)):
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    scale = scaling if scaling is not None else dim**-0.5
    # Query heads share a KV head in consecutive groups (as repeat_kv lays them out).
    q = query.float().view(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(q, key.float().transpose(-1, -2)) * scale  # (b, kv, group, k)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, float("-inf"))
    out = torch.matmul(scores.softmax(-1), value.float())  # (b, kv, group, d)
    return out.view(batch, heads, 1, dim).transpose(1, 2).to(query.dtype), None


def use_decode_attention(model: Any) -> bool:
    """Switch a loaded model to `decode_attention` where it applies: SDPA attention without
    logit soft-capping (Gemma 3; not Gemma 2, which caps). Returns whether it did."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    config = getattr(model, "config", None)
    if (config is None or getattr(config, "_attn_implementation", None) != "sdpa"
            or getattr(config, "attn_logit_softcapping", None)):
        return False
    AttentionInterface.register(NAME, decode_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the same masks as SDPA
    model.set_attn_implementation(NAME)
    return True
