"""Third-party models for runner tests, loaded by the worker as "tests.fixture_models:NAME"."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from torch import Tensor, nn

from models.config import TransformerConfig
from models.transformer import Transformer


class _Misbehaving(Transformer):
    """A real Transformer that misbehaves at one sequence length (config key `max_len` doubles
    as the trigger so no new config key is needed)."""

    action: str = "raise"
    calls: int = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.action == "crash_later" and x.shape[1] == self.config.max_len and self.calls == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # after a warm-up and a timed step: mid-rotation
        if x.shape[1] == self.config.max_len:
            if self.action == "raise":
                raise RuntimeError(f"boom at seq_len={x.shape[1]}")
            if self.action == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.action == "hang":
                time.sleep(3600)
        return super().forward(x)


def _build(action: str, config: dict[str, Any]) -> nn.Module:
    model = _Misbehaving(TransformerConfig.from_dict(config))
    model.action = action
    return model


def exploding(config: dict[str, Any]) -> nn.Module:
    return _build("raise", config)


def crashing(config: dict[str, Any]) -> nn.Module:
    return _build("crash", config)


def crashing_later(config: dict[str, Any]) -> nn.Module:
    return _build("crash_later", config)


def hanging(config: dict[str, Any]) -> nn.Module:
    return _build("hang", config)
