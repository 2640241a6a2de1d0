"""The CPU decoding attention against PyTorch's SDPA: same results, on its own and in a model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from model.llm.decoding.attention import NAME, decode_attention, use_decode_attention  # noqa: E402


class Layer(torch.nn.Module):
    """What the attention function reads of the module calling it: an attention layer in
    inference (eval) mode."""

    def __init__(self, kv_groups: int = 1) -> None:
        super().__init__()
        self.num_key_value_groups = kv_groups
        self.eval()


def reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    out = torch.nn.functional.scaled_dot_product_attention(
        query.double(), key.double(), value.double(), attn_mask=mask, scale=scale,
        enable_gqa=True)
    return out.transpose(1, 2)


def count_library_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import transformers.integrations.sdpa_attention as sdpa

    calls: list[int] = []
    library = sdpa.sdpa_attention_forward

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return library(*args, **kwargs)

    monkeypatch.setattr(sdpa, "sdpa_attention_forward", counted)
    return calls


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_one_query_row_matches_sdpa(kv_heads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    library_calls = count_library_calls(monkeypatch)
    torch.manual_seed(0)
    batch, heads, keys, dim = 3, 4, 37, 16
    query = torch.randn(batch, heads, 1, dim)
    key, value = torch.randn(2, batch, kv_heads, keys, dim)
    mask = torch.rand(batch, 1, 1, keys) > 0.3  # rows of a batch see different keys
    mask[..., -1] = True
    for m in (mask, None):
        out, weights = decode_attention(Layer(heads // kv_heads), query, key, value, m,
                                        scaling=0.3)
        assert weights is None and out.shape == (batch, 1, heads, dim)
        assert torch.allclose(out.double(), reference(query, key, value, m, 0.3), atol=1e-5)
    assert not library_calls


def test_prompt_rows_and_float_masks_take_the_library_path() -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(1)
    query, key, value = torch.randn(3, 1, 2, 5, 8)
    ours, _ = decode_attention(Layer(2), query, key, value, None, scaling=0.5, is_causal=True)
    library, _ = sdpa_attention_forward(Layer(2), query, key, value, None, scaling=0.5,
                                        is_causal=True)
    assert torch.equal(ours, library)
    additive = torch.zeros(1, 1, 1, 5)
    one_row = query[:, :, :1]
    ours, _ = decode_attention(Layer(2), one_row, key, value, additive, scaling=0.5)
    library, _ = sdpa_attention_forward(Layer(2), one_row, key, value, additive, scaling=0.5)
    assert torch.equal(ours, library)


def test_a_gemma3_decodes_the_same_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prompt read and greedy steps through the KV cache, sliding-window layers included
    (window 8, prompt 20 tokens), in fp32: same logits as with SDPA."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=1, head_dim=16, sliding_window=8,
        max_position_embeddings=256)
    model = Gemma3ForCausalLM(config).eval()
    assert "full_attention" in config.layer_types and "sliding_attention" in config.layer_types
    prompt = torch.randint(0, 300, (2, 20))

    def greedy() -> list[torch.Tensor]:
        logits, out = [], model(input_ids=prompt, use_cache=True)
        for _ in range(12):
            logits.append(out.logits[:, -1])
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            out = model(input_ids=token, cache=out.cache, use_cache=True)
        return logits

    with torch.inference_mode():
        library = greedy()
        assert use_decode_attention(model) and model.config._attn_implementation == NAME
        library_calls = count_library_calls(monkeypatch)
        ours = greedy()
    assert len(library_calls) == config.num_hidden_layers  # the prompt read only
    for a, b in zip(library, ours, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_soft_capped_attention_is_left_alone() -> None:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    model = Gemma2ForCausalLM(Gemma2Config(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16))
    assert model.config.attn_logit_softcapping
    before = model.config._attn_implementation
    assert not use_decode_attention(model)
    assert model.config._attn_implementation == before
