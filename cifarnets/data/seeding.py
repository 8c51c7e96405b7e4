"""Seeded generators derived from a tuple key, independent of the global RNG.

Every random choice in `cifarnets.data` (the val split, `limit`, the synthetic images, each
epoch's shuffle and augmentation) draws from its own `torch.Generator` seeded from a key such
as ``(seed, "epoch", 7)``. Hashing the whole key, rather than adding numbers (``seed + epoch``),
keeps streams from colliding: seed 0 epoch 1 and seed 1 epoch 0 get unrelated generators.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["derive_seed", "make_generator"]


def derive_seed(*key: int | str) -> int:
    """A 63-bit seed that depends on every part of `key` (stable across processes and versions)."""
    text = "\x1f".join(f"{type(part).__name__}:{part}" for part in key)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def make_generator(*key: int | str) -> torch.Generator:
    """A CPU `torch.Generator` seeded from `key`.

    Kept on the CPU on purpose: CPU streams are the same on every machine, so a split or an
    epoch's batch order does not change when a run moves between CPU and GPU.
    """
    gen = torch.Generator()
    gen.manual_seed(derive_seed(*key))
    return gen
