"""A stand-in for the parts of torch.cuda that CUDA timing touches, for machines without a GPU.

It models what matters for timing: each device has a current stream with its own clock; a kernel
advances the clock of the stream it is launched on (the stream of the device its tensors live on,
whatever the current device is); an event records the clock of the stream it is recorded on,
and with no stream given that is the *current* device's current stream, as in torch. Every
record is logged with its device, so a test can say which device an event landed on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch


@dataclass
class FakeStream:
    device_index: int
    clock_ms: float = 0.0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.device_index)


@dataclass
class FakeCuda:
    n_devices: int = 2
    capability: tuple[int, int] = (9, 0)
    current: int = 0
    records: list[int] = field(default_factory=list)  # device index of each Event.record, in order

    def __post_init__(self) -> None:
        self.streams = [FakeStream(i) for i in range(self.n_devices)]

    def index(self, device: torch.device | str | int | None) -> int:
        if device is None:
            return self.current
        if isinstance(device, int):
            return device
        index = torch.device(device).index
        return self.current if index is None else index

    def launch(self, device: str, ms: float) -> None:
        """A kernel on `device`'s current stream that takes `ms` of GPU time."""
        self.streams[self.index(device)].clock_ms += ms

    # ---- the torch.cuda names the stand-in replaces ----------------------------------------------
    def current_stream(self, device: torch.device | str | int | None = None) -> FakeStream:
        return self.streams[self.index(device)]

    @contextmanager
    def device(self, device: torch.device | str | int | None) -> Iterator[None]:
        before, self.current = self.current, self.index(device)
        try:
            yield
        finally:
            self.current = before

    def event_class(self) -> type:
        cuda = self

        class FakeEvent:
            def __init__(self, enable_timing: bool = False, **_: Any) -> None:
                self.stream: FakeStream | None = None
                self.at_ms = 0.0

            def record(self, stream: FakeStream | None = None) -> None:
                self.stream = stream if stream is not None else cuda.current_stream()
                self.at_ms = self.stream.clock_ms
                cuda.records.append(self.stream.device_index)

            def synchronize(self) -> None:
                pass

            def elapsed_time(self, end_event: "FakeEvent") -> float:
                assert self.stream is not None and end_event.stream is not None
                if self.stream.device_index != end_event.stream.device_index:
                    raise RuntimeError("events on different devices")  # as CUDA refuses
                return end_event.at_ms - self.at_ms

        return FakeEvent


# The torch.cuda functions the stand-in replaces; a test checks each still exists in torch.
REPLACED = ("Event", "current_stream", "device", "synchronize", "is_available", "device_count",
            "get_device_capability", "get_device_name")


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    cuda = FakeCuda()
    monkeypatch.setattr(torch.cuda, "Event", cuda.event_class())
    monkeypatch.setattr(torch.cuda, "current_stream", cuda.current_stream)
    monkeypatch.setattr(torch.cuda, "device", cuda.device)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda.n_devices)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cuda.capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Stand-in GPU")
    monkeypatch.setattr(torch.version, "hip", None)
    return cuda
