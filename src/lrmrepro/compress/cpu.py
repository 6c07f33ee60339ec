"""Work-around for llm-compressor on machines without an accelerator.

llm-compressor 0.14's sequential pipeline pins cached activations (``IntermediatesCache.pin_memory``) to speed up
host-to-device copies; on a CPU-only machine ``Tensor.pin_memory()`` raises "Cannot access accelerator device"
(seen with AWQ). Pinning is useless without an accelerator, so while :func:`no_pinning_without_accelerator` is
active and no accelerator is present, the method does nothing. With a GPU nothing is changed.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def accelerator_available() -> bool:
    acc = getattr(torch, "accelerator", None)
    if acc is not None and hasattr(acc, "is_available"):
        return bool(acc.is_available())
    return torch.cuda.is_available()


@contextlib.contextmanager
def no_pinning_without_accelerator() -> Iterator[bool]:
    """Yield True when the work-around is active."""
    if accelerator_available():
        yield False
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.__dict__.get("pin_memory")
    if original is None:  # the method is gone in this llm-compressor version: nothing to work around
        yield False
        return
    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None
    try:
        yield True
    finally:
        IntermediatesCache.pin_memory = original
