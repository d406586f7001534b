"""A decode KV cache that appends in place.

Hugging Face's ``DynamicCache`` appends a step's keys/values with ``torch.cat`` of the whole cache, in
every layer and every step: the traffic grows with the context (at 8 rows x 512 positions it was 12% of a
26.5M-parameter model's decode step, ``docs/benchmarks.md``). :class:`BufferLayer` keeps each layer's
keys/values in a buffer with room for the tokens still to come (:meth:`BufferLayer.reserve`), writes a
step's position in place and hands attention a view of the filled part (``[:, :, :length]``), so
attention runs over the live length only (unlike a static cache, which attends over its whole buffer).
Rows are fanned out (``batch_repeat_interleave``) and dropped (``batch_select_indices``) as in a
``DynamicCache``, copying only the filled part. A buffer that runs out of room grows to twice its size.

:func:`decode_cache` builds one for a model: a ``DynamicCache`` whose layers are :class:`BufferLayer`,
or, for models with other layer kinds (sliding-window, linear-attention, ...), the config-built
``DynamicCache`` itself. Shapes: ``(B, H, L, D)`` rows, key/value heads, positions, head size.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

__all__ = ["BufferLayer", "decode_cache", "reserve"]


class BufferLayer(DynamicLayer):
    """One layer's keys/values in preallocated buffers; ``keys`` / ``values`` are views of the filled part."""

    def __init__(self):
        super().__init__()
        self.length = 0
        self._k: torch.Tensor | None = None   # (B, H, capacity, D)
        self._v: torch.Tensor | None = None

    @property
    def capacity(self) -> int:
        return 0 if self._k is None else int(self._k.shape[2])

    def _refill(self, rows: torch.Tensor | None, capacity: int) -> None:
        """New buffers of ``capacity`` positions holding the filled part of rows ``rows`` (None: all)."""
        k, v = self._k[:, :, :self.length], self._v[:, :, :self.length]
        if rows is not None:
            k, v = k.index_select(0, rows), v.index_select(0, rows)
        B, H, _, D = k.shape
        self._k, self._v = k.new_empty((B, H, capacity, D)), v.new_empty((B, H, capacity, v.shape[3]))
        self._k[:, :, :self.length], self._v[:, :, :self.length] = k, v
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self._k[:, :, :self.length], self._v[:, :, :self.length]

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if self._k is None:
            B, H, _, D = key_states.shape
            self._k = key_states.new_empty((B, H, end, D))
            self._v = value_states.new_empty((B, H, end, value_states.shape[3]))
            self.device, self.is_initialized = key_states.device, True
        elif end > self.capacity:
            self._refill(None, max(end, 2 * self.capacity))
        self._k[:, :, self.length:end] = key_states
        self._v[:, :, self.length:end] = value_states
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
        if self._k is not None:
            self._refill(indices.to(self._k.device), self.capacity)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._k is not None:
            rows = torch.arange(self._k.shape[0], device=self._k.device).repeat_interleave(repeats)
            self._refill(rows, self.capacity)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop: expected a negative number of tokens to remove, got {tokens_to_remove}")
        if self._k is not None and tokens_to_remove:
            self.length = max(0, self.length + tokens_to_remove)
            self._views()

    def reset(self) -> None:
        self._k = self._v = None
        self.length = 0
        self.keys = self.values = None
        self.is_initialized = False


def decode_cache(config):
    """A ``DynamicCache`` of :class:`BufferLayer` for a model with this ``config``; the config-built
    ``DynamicCache`` when a layer is not a plain full-attention ``DynamicLayer`` (sliding window, ...)."""
    from transformers import DynamicCache

    try:
        ref = DynamicCache(config=config)
    except TypeError:  # older transformers: no config argument
        ref = None
    if ref is not None and any(type(layer) is not DynamicLayer for layer in ref.layers):
        return ref
    cache = DynamicCache()
    cache.layers = [BufferLayer() for _ in (ref.layers if ref is not None else ())]
    cache.layer_class_to_replicate = BufferLayer
    return cache


def reserve(cache, extra: int) -> None:
    """Room for ``extra`` more positions in every :class:`BufferLayer` of ``cache`` (others: nothing)."""
    for layer in getattr(cache, "layers", ()):
        if isinstance(layer, BufferLayer):
            layer.reserve(extra)
