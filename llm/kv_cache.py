"""A decode KV cache that appends in place.

Hugging Face's ``DynamicCache`` appends a step's keys/values with ``torch.cat`` of the whole cache, in
every layer and every step: the traffic grows with the context (at 8 rows x 512 positions it was 12% of a
26.5M-parameter model's decode step, ``docs/benchmarks.md``). :class:`BufferLayer` keeps each layer's
keys/values in a buffer with room for the tokens still to come (:meth:`BufferLayer.reserve`), writes a
step's position in place and hands attention a view of the filled part (``[:, :, :length]``), so
attention runs over the live length only (unlike a static cache, which attends over its whole buffer).
Rows are fanned out (``batch_repeat_interleave``: new buffers) and dropped (``batch_select_indices``:
within the buffers, moving only the rows after the first dropped one) as in a ``DynamicCache``, copying
only the filled part. A buffer that runs out of room grows to twice its size.

:func:`decode_cache` builds one for a model: a ``DynamicCache`` whose layers are :class:`BufferLayer`,
or, for models with other layer kinds (sliding-window, linear-attention, ...) or heads smaller than
:data:`MIN_HEAD_DIM`, the config-built ``DynamicCache`` itself. Shapes: ``(B, H, L, D)`` rows, key/value heads, positions, head size.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

__all__ = ["BufferLayer", "decode_cache", "reserve"]


class BufferLayer(DynamicLayer):
    """One layer's keys/values in preallocated buffers; ``keys`` / ``values`` are views of the filled part
    (the first ``rows`` rows, the first ``length`` positions)."""

    def __init__(self):
        super().__init__()
        self.length = 0
        self.rows = 0
        self._k: torch.Tensor | None = None   # (B_buffer, H, capacity, D); rows >= self.rows unused
        self._v: torch.Tensor | None = None

    @property
    def capacity(self) -> int:
        return 0 if self._k is None else int(self._k.shape[2])

    def _refill(self, rows: torch.Tensor | None, capacity: int) -> None:
        """New buffers of ``capacity`` positions holding the filled part of rows ``rows`` (None: all live rows)."""
        k, v = self.keys, self.values
        if rows is not None:
            k, v = k.index_select(0, rows), v.index_select(0, rows)
        B, H, _, D = k.shape
        self._k, self._v = k.new_empty((B, H, capacity, D)), v.new_empty((B, H, capacity, v.shape[3]))
        self._k[:, :, :self.length], self._v[:, :, :self.length] = k, v
        self.rows = B
        self._views()

    def _views(self) -> None:
        self.keys = self._k[:self.rows, :, :self.length]
        self.values = self._v[:self.rows, :, :self.length]

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if self._k is None:
            B, H, _, D = key_states.shape
            self._k = key_states.new_empty((B, H, end, D))
            self._v = value_states.new_empty((B, H, end, value_states.shape[3]))
            self.rows = B
            self.device, self.is_initialized = key_states.device, True
        elif end > self.capacity:
            self._refill(None, max(end, 2 * self.capacity))
        self._k[:self.rows, :, self.length:end] = key_states
        self._v[:self.rows, :, self.length:end] = value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def reserve(self, extra: int) -> None:
        """Room for ``extra`` more positions (one copy of the filled part if the buffer is smaller)."""
        if self._k is not None and self.length + extra > self.capacity:
            self._refill(None, self.length + extra)

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` (in that order). Within the buffer when they fit (rows before the first
        moved one stay where they are, the others are gathered, then written back); a larger selection
        (repeated rows) gets new buffers."""
        if self._k is None:
            return
        idx = indices.to(self._k.device)
        m = idx.numel()
        if m > self._k.shape[0]:
            self._refill(idx, self.capacity)
            return
        moved = (idx != torch.arange(m, device=idx.device)).nonzero()
        if moved.numel():
            j = int(moved[0])
            k, v = self.keys.index_select(0, idx[j:]), self.values.index_select(0, idx[j:])
            self._k[j:m, :, :self.length], self._v[j:m, :, :self.length] = k, v
        self.rows = m
        self._views()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._k is not None:
            rows = torch.arange(self.rows, device=self._k.device).repeat_interleave(repeats)
            self._refill(rows, self.capacity)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop: expected a negative number of tokens to remove, got {tokens_to_remove}")
        if self._k is not None and tokens_to_remove:
            self.length = max(0, self.length + tokens_to_remove)
            self._views()

    def reset(self) -> None:
        self._k = self._v = None
        self.length = self.rows = 0
        self.keys = self.values = None
        self.is_initialized = False


MIN_HEAD_DIM = 64
"""smallest attention head size given :class:`BufferLayer` s. Below it (toy models) the CPU attention kernel's
slowdown on a view of the buffer outweighs the saved copies: on the tiny default (head size 24, 256 rows,
~100 positions) a decode step took 12-13 ms with buffers against 10-11 ms with ``DynamicCache``; at head size
64 (the 26.5M benchmark model, 8 rows x 512 positions) the view costs nothing and the buffers save the
``torch.cat`` (``docs/benchmarks.md``, "Decode loop")."""


def head_dim(config) -> int | None:
    """Attention head size of a model config (``head_dim``, else hidden size / heads; None if unknown)."""
    cfg = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    d = getattr(cfg, "head_dim", None)
    if d is None and getattr(cfg, "hidden_size", None) and getattr(cfg, "num_attention_heads", None):
        d = cfg.hidden_size // cfg.num_attention_heads
    return d


def decode_cache(config):
    """A ``DynamicCache`` of :class:`BufferLayer` for a model with this ``config``; the config-built
    ``DynamicCache`` when a layer is not a plain full-attention ``DynamicLayer`` (sliding window, ...) or the
    heads are smaller than :data:`MIN_HEAD_DIM`."""
    from transformers import DynamicCache

    try:
        ref = DynamicCache(config=config)
    except TypeError:  # older transformers: no config argument
        ref = DynamicCache()
    if any(type(layer) is not DynamicLayer for layer in ref.layers) or (head_dim(config) or 0) < MIN_HEAD_DIM:
        return ref
    cache = DynamicCache()
    cache.layers = [BufferLayer() for _ in ref.layers]
    cache.layer_class_to_replicate = BufferLayer
    return cache


def reserve(cache, extra: int) -> None:
    """Room for ``extra`` more positions in every :class:`BufferLayer` of ``cache`` (others: nothing)."""
    for layer in getattr(cache, "layers", ()):
        if isinstance(layer, BufferLayer):
            layer.reserve(extra)
