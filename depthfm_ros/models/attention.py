"""The official code's two attention paths (github.com/CompVis/depth-fm, ``depthfm/unet/attention.py``).

With xformers installed (its environment) ``MemoryEfficientCrossAttention`` uses the plain softmax scale
1/sqrt(d): diffusers' default processors reproduce that. Without xformers, ``CrossAttention.forward(
rescale_attention=True)`` scales *self*-attention by sqrt(log(n) / log(4n) / d), n the number of tokens
(cross-attention keeps 1/sqrt(d)): :class:`RescaledSelfAttnProcessor`. At realistic weight scale the two differ by
~1.4e-3 in relative depth; small random weights hide it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0


class RescaledSelfAttnProcessor(AttnProcessor2_0):
    """diffusers attention with the official non-xformers scale for self-attention; everything else (cross-attention,
    masks, 4-D inputs, norms) goes through diffusers' own processor unchanged."""

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args, **kwargs):
        plain = (encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 3
                 or attn.spatial_norm is not None or attn.group_norm is not None or attn.norm_q is not None
                 or attn.norm_k is not None or attn.residual_connection)
        if plain:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        batch, n_tokens, _ = hidden_states.shape
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        if torch.jit.is_tracing():  # ONNX export: n follows the graph's input size (dynamic spatial axes)
            n = torch._shape_as_tensor(hidden_states)[1].to(query.dtype)
            query = query * torch.sqrt(torch.log(n) / torch.log(4 * n) / head_dim)
            scale = 1.0
        else:
            scale = math.sqrt(math.log(n_tokens) / math.log(4 * n_tokens) / head_dim)
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False, scale=scale)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor


def set_rescale_attention(unet, rescale: bool) -> None:
    """Switch every attention layer of ``unet`` to the official non-xformers path (``rescale``) or back to the
    plain 1/sqrt(d) path (diffusers' default, the official xformers path)."""
    unet.set_attn_processor(RescaledSelfAttnProcessor() if rescale else AttnProcessor2_0())
