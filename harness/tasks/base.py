"""What an accuracy task is: data, a held-out split, the model keys it needs, and how it is scored.

A task owns everything that must be identical across the variants of a comparison (data, split,
data order, scoring), so a baseline and a reuse model trained on it differ only in the model.
Each task also carries a `default_budget`: the training budget and model size at which it fits
this project's CPU budget (about 20 s per training on 2 cores), so a suite need only name it.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Iterator, Mapping

import torch
from torch import Tensor

IGNORE_INDEX = -100  # target value that scores nothing and costs nothing (torch's cross_entropy default)

# The model size every task's default budget uses, so one suite `model:` section serves all tasks:
# 3 layers so that two of them reuse; 4 heads so reuse ratios 0.25 / 0.5 / 1 are exactly K = 1 / 2 / 4.
CPU_MODEL: Mapping[str, Any] = MappingProxyType({"d_model": 64, "n_heads": 4, "n_layers": 3, "d_ff": 128})


class TaskOptionError(ValueError):
    """An unknown or invalid task option; `option` names it."""

    def __init__(self, task: str, option: str, message: str) -> None:
        super().__init__(f"task {task!r}, option {option!r}: {message}")
        self.task, self.option = task, option


@dataclass(frozen=True)
class Budget:
    """A task's default training budget and model size, tuned to fit the CPU suite."""

    train_steps: int
    eval_every: int
    lr: float
    weight_decay: float
    warmup_steps: int
    # Model-size keys (d_model, n_heads, n_layers, d_ff, ...): used where the model config passed
    # to train_and_evaluate does not set them.
    model: Mapping[str, Any] = field(default_factory=dict)

    def training_fields(self) -> dict[str, Any]:
        """The AccuracyConfig fields this budget supplies."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}


@dataclass(frozen=True)
class Split:
    x_train: Tensor
    y_train: Tensor
    x_eval: Tensor
    y_eval: Tensor


class Task(abc.ABC):
    """One accuracy task. Subclasses set the class attributes and an `Options` dataclass.

    Options are validated once, here, at construction (`get_task(name, **options)`); unknown keys
    are an error rather than silently ignored, because a typo would change nothing and look fine.
    """

    name: ClassVar[str]
    data_seed: ClassVar[int]            # fixes data generation and the split, never the data order
    default_budget: ClassVar[Budget]
    Options: ClassVar[type]             # a frozen dataclass of task options with defaults

    def __init__(self, **options: Any) -> None:
        known = {f.name for f in dataclasses.fields(self.Options)}
        for key in options:
            if key not in known:
                raise TaskOptionError(self.name, key, f"unknown option (known: {', '.join(sorted(known))})")
        self.options = self.Options(**options)
        self._data: Split | None = None
        self._validate_positive("batch_size")
        self.validate()

    # ---- subclass API ----------------------------------------------------------------------
    @abc.abstractmethod
    def validate(self) -> None:
        """Check option values beyond their types; raise TaskOptionError."""

    @abc.abstractmethod
    def model_overrides(self) -> dict[str, Any]:
        """models.config keys this task requires (input kind, head, vocabulary, length, causality)."""

    @abc.abstractmethod
    def build_data(self) -> Split:
        """Build the training pool and the held-out set from `data_seed` (called once, then cached)."""

    # ---- shared behaviour -------------------------------------------------------------------
    def train_set(self) -> tuple[Tensor, Tensor]:
        """The whole training pool (x, y)."""
        split = self._split()
        return split.x_train, split.y_train

    def eval_set(self) -> tuple[Tensor, Tensor]:
        """The held-out evaluation set (x, y), disjoint from the training pool."""
        split = self._split()
        return split.x_eval, split.y_eval

    def _split(self) -> Split:
        if self._data is None:
            self._data = self.build_data()
        return self._data

    @property
    def batch_size(self) -> int:
        return int(self.options.batch_size)

    @property
    def seq_len(self) -> int:
        return int(self.eval_set()[0].shape[1])

    def train_batches(self, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Endless (x, y) batches; the order depends only on `seed`, never on global RNG state.

        Each epoch is a fresh permutation of the pool and the last partial batch is dropped, so
        every step has the same shape (and the same FLOPs) and every sample is seen over epochs.
        """
        x, y = self.train_set()
        n, b = x.shape[0], self.batch_size
        if b > n:
            raise TaskOptionError(self.name, "batch_size", f"{b} exceeds the {n} training samples")
        g = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(n, generator=g)
            for start in range(0, n - b + 1, b):
                idx = order[start:start + b]
                yield x[idx], y[idx]

    def resolve_model_config(self, model_config: Mapping[str, Any]) -> dict[str, Any]:
        """The task's default model size < `model_config` (the suite's) < the keys the task requires.

        The task's keys win because the data fixes them (input kind, vocabulary, length, head).
        """
        return {**self.default_budget.model, **model_config, **self.model_overrides()}

    def training_length(self) -> int:
        """Tokens per training sequence, known without building the data (every task pads or cuts
        its inputs to the model's max_len)."""
        return int(self.model_overrides()["max_len"])

    def real_positions(self, x: Tensor) -> Tensor:
        """(B, T) bool: positions that hold input rather than padding (every one, unless a task pads)."""
        return torch.ones(x.shape[:2], dtype=torch.bool)

    def accuracy(self, logits: Tensor, y: Tensor) -> tuple[int, int]:
        """(correct, counted) over targets that are not IGNORE_INDEX; works for both heads."""
        scored = y != IGNORE_INDEX
        correct = (logits.argmax(dim=-1) == y) & scored
        return int(correct.sum()), int(scored.sum())

    def describe(self) -> dict[str, Any]:
        """JSON-able facts about the data, for the result row."""
        x_train, _ = self.train_set()
        x_eval, y_eval = self.eval_set()
        scored = y_eval[y_eval != IGNORE_INDEX]
        # What always answering the most common target would score: the floor to read accuracy against.
        majority = int(torch.bincount(scored).max()) / scored.numel()
        return {"task": self.name, "data_seed": self.data_seed, "task_options": dataclasses.asdict(self.options),
                "n_train": int(x_train.shape[0]), "n_eval": int(x_eval.shape[0]),
                # Prefixed: a result row's own seq_len / batch_size are the harness point's axes.
                "train_seq_len": self.seq_len, "train_batch_size": self.batch_size,
                "eval_majority_accuracy": majority}

    def _validate_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self.options, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise TaskOptionError(self.name, name, f"expected a positive integer, got {value!r}")
