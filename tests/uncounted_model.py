"""A third-party model whose forward runs a matrix product torch's FLOP counter has no formula for
(`aten.mv`), loaded by the registry as "uncounted_model:build" in the tests."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class MatVecHead(nn.Module):
    def __init__(self, vocab_size: int, d_model: int, n_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.weights = nn.Parameter(torch.randn(n_classes, d_model))

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.embed(x).mean(dim=1)                                  # (B, d_model)
        return torch.stack([torch.mv(self.weights, row) for row in pooled])  # (B, n_classes)


def build(config: dict[str, Any]) -> nn.Module:
    return MatVecHead(config.get("vocab_size", 1024), config.get("d_model", 64), config.get("n_classes", 10))
