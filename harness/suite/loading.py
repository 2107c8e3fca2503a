"""Suite stage: load a YAML suite, apply `--set` overrides, validate it once, hand on a Suite.

A suite says what is compared (variants), over what (sweep axes) and how hard to measure
(measure). Everything is checked before anything runs, and every problem is reported at once
with the file line (or override) it came from. See suites/seq_len.yaml for the format.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import yaml

from harness.suite.task import AccuracyConfig, MeasureConfig
from harness.suite.checks import Checker, Problem, ProblemsError, describe, load_checked
from harness.suite.sections import (DEFAULT_METRICS, Variant, check_model_configs, check_ownership,
                                    model_config, read_accuracy, read_measure, read_metrics,
                                    read_sweep, read_variants)
from harness.suite.yamlpos import format_path, load_yaml

__all__ = ["Problem", "Suite", "SuiteError", "SuiteInfo", "Variant", "list_suites", "load_suite", "slug"]

TOP_KEYS = ("name", "description", "model", "variants", "sweep", "metrics", "measure", "accuracy",
            "seed", "output_dir")
Axes = dict[str, tuple[Any, ...]]


class SuiteError(ProblemsError):
    """A suite that cannot run; `.problems` lists everything wrong with it, one per line in str()."""


def slug(name: str) -> str:
    """`name` made safe for a directory name: letters, digits, '_', '.' and '-', at most 60 of them."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:60] or "suite"


@dataclass(frozen=True)
class Suite:
    """A validated suite with every default filled in (what the manifest records)."""

    name: str                          # free text; `slug` makes it a directory name
    description: str
    path: str                          # the file it was loaded from
    model: dict[str, Any]              # shared model config keys (models.config.TransformerConfig)
    variants: dict[str, Variant]       # label -> variant, in file order
    sweep: Axes                        # axis -> values, varied as a product; includes defaulted axes
    zip_groups: tuple[Axes, ...]       # axes varied together, group by group
    exclude: tuple[Axes, ...]          # a point matching every axis of a rule (any listed value) is dropped
    metrics: tuple[str, ...]
    measure: MeasureConfig
    accuracy: AccuracyConfig | None    # None unless metrics includes accuracy
    seed: int
    output_dir: str
    # The accuracy keys the suite wrote; the rest come from each task's own default budget, so
    # a `task` sweep trains every task with the budget sized for it.
    accuracy_written: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        return slug(self.name)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict in the suite file's own layout (plus `path`)."""
        return {
            "name": self.name, "description": self.description, "path": self.path,
            "model": dict(self.model),
            "variants": {label: {"model": v.model, **({"compile": True} if v.compile else {}), **v.overrides}
                         for label, v in self.variants.items()},
            "sweep": {**{axis: list(values) for axis, values in self.sweep.items()},
                      "zip": [_lists(group) for group in self.zip_groups],
                      "exclude": [_lists(rule) for rule in self.exclude]},
            "metrics": list(self.metrics),
            "measure": dataclasses.asdict(self.measure),
            "accuracy": None if self.accuracy is None else {
                **dataclasses.asdict(self.accuracy), "seeds": list(self.accuracy.seeds)},
            "accuracy_written": list(self.accuracy_written),
            "seed": self.seed, "output_dir": self.output_dir,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Suite":
        """Inverse of to_json. Trusts its input: it was validated when the suite was loaded."""
        sweep = dict(data["sweep"])
        zip_groups, exclude = sweep.pop("zip", []), sweep.pop("exclude", [])
        variants = {}
        for label, spec in data["variants"].items():
            overrides = {k: v for k, v in spec.items() if k not in ("model", "compile")}
            variants[label] = Variant(label, spec["model"], overrides, bool(spec.get("compile", False)))
        accuracy = data.get("accuracy")
        return cls(
            name=data["name"], description=data["description"], path=data["path"],
            model=dict(data["model"]), variants=variants, sweep=_tuples(sweep),
            zip_groups=tuple(_tuples(g) for g in zip_groups), exclude=tuple(_tuples(r) for r in exclude),
            metrics=tuple(data["metrics"]), measure=MeasureConfig(**data["measure"]),
            accuracy=None if accuracy is None else AccuracyConfig(**{**accuracy, "seeds": tuple(accuracy["seeds"])}),
            seed=data["seed"], output_dir=data["output_dir"],
            accuracy_written=tuple(data.get("accuracy_written", [f.name for f in dataclasses.fields(AccuracyConfig)])),
        )


def _lists(axes: Axes) -> dict[str, list[Any]]:
    return {axis: list(values) for axis, values in axes.items()}


def _tuples(axes: dict[str, list[Any]]) -> Axes:
    return {axis: tuple(values) for axis, values in axes.items()}


# ---- loading ---------------------------------------------------------------------------------
def load_suite(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> Suite:
    """Load and validate a suite; `overrides` are `key.path=yaml-value` strings applied first.

    Raises SuiteError listing every problem found.
    """
    check = load_checked(path, "suite", SuiteError)
    data = check.doc.data
    if not isinstance(data, dict):
        found = "an empty file" if data is None else describe(data)
        check.report((), "a mapping of suite keys (name, variants, sweep, ...)", found)
        raise SuiteError(check.problems)
    _apply_overrides(check, data, overrides)
    suite = _read_suite(check, data, check.file)
    if check.problems or suite is None:
        raise SuiteError(_in_file_order(check.problems))
    return suite


def _apply_overrides(check: Checker, data: dict[str, Any], overrides: Iterable[str]) -> None:
    """Write each `a.b.c=value` into the loaded data, remembering it as the source of a.b.c."""
    for text in overrides:
        key, sep, raw = text.partition("=")
        path = tuple(part.strip() for part in key.split("."))
        if not sep or not all(path):
            check.problems.append(Problem(f"--set {text}", key.strip(), None, "key.path=value", repr(text)))
            continue
        try:
            value = load_yaml(raw).data
        except yaml.MarkedYAMLError as error:
            check.problems.append(Problem(f"--set {text}", key.strip(), None, "a YAML value",
                                          error.problem or "invalid YAML"))
            continue
        target = data
        for depth, part in enumerate(path[:-1]):
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                check.problems.append(Problem(f"--set {text}", format_path(path[:depth + 1]), None,
                                              "a mapping to set a key in", describe(target)))
                break
        else:
            target[path[-1]] = value
            check.origins[path] = text


def _read_suite(check: Checker, data: dict[str, Any], file: str) -> Suite | None:
    check.known_keys((), data, TOP_KEYS, "top-level")
    name = _scalar(check, data, "name", str, None)
    description = _scalar(check, data, "description", str, "")
    seed = _scalar(check, data, "seed", int, 0)
    output_dir = _scalar(check, data, "output_dir", str, "reports")
    model_raw = check.mapping(("model",), data.get("model", {}), "model config keys")
    model = model_config(check, ("model",), model_raw) if model_raw is not None else {}
    if "variants" in data:
        variants = read_variants(check, data["variants"])
    else:
        check.report(("variants",), "a mapping of variant labels (required)", "nothing")
        variants = {}
    metrics = read_metrics(check, data["metrics"]) if "metrics" in data else DEFAULT_METRICS
    measure = read_measure(check, data.get("measure", {}))
    accuracy = read_accuracy(check, data["accuracy"]) if "accuracy" in data else None
    if "accuracy" in metrics and "accuracy" not in data:
        check.report(("accuracy",), "an accuracy section (metrics includes accuracy)", "nothing")
    sweep = read_sweep(check, data.get("sweep", {}), metrics)
    if check.problems:
        return None  # cross-section checks would only echo the problems above
    check_ownership(check, model, variants, sweep)
    if check.problems:
        return None
    if check_model_configs(check, model, variants, sweep) == 0:
        check.report(("sweep", "exclude"), "rules that leave at least one point", "every point excluded")
    if check.problems:
        return None
    return Suite(
        name=name, description=description, path=file, model=model, variants=variants,
        sweep=sweep.axes, zip_groups=sweep.zip_groups, exclude=sweep.exclude, metrics=metrics,
        measure=measure, accuracy=accuracy if "accuracy" in metrics else None,
        seed=seed, output_dir=output_dir,
        accuracy_written=tuple(k for k in data.get("accuracy") or {} if isinstance(data["accuracy"], dict)),
    )


def _scalar(check: Checker, data: dict[str, Any], key: str, hint: type, default: Any) -> Any:
    """A top-level scalar; `default` None means required."""
    if key not in data:
        if default is None:
            check.report((key,), f"{'a string' if hint is str else 'a value'} (required)", "nothing")
        return default
    ok, value = check.value((key,), data[key], hint)
    if ok and hint is str and key == "name" and not value.strip():
        check.report((key,), "a non-empty name", describe(value))
    return value if ok else default


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    # Problems in the file first, by line; then those from --set overrides, as given.
    return sorted(problems, key=lambda p: (p.file.startswith("--set "), p.line is None, p.line or 0))


# ---- discovery -------------------------------------------------------------------------------
class SuiteInfo(NamedTuple):
    name: str
    path: str
    description: str


def list_suites(directory: str | os.PathLike[str]) -> list[SuiteInfo]:
    """Suites in `directory` (*.yaml, *.yml), sorted by file name; an invalid one is listed with
    its first problem as description, so a broken suite is visible rather than silently missing."""
    infos = []
    for path in sorted(Path(directory).iterdir()):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            suite = load_suite(path)
        except SuiteError as error:
            count = len(error.problems)
            infos.append(SuiteInfo(path.stem, str(path),
                                   f"invalid suite ({count} problem{'s' * (count != 1)}): {error.problems[0]}"))
        else:
            infos.append(SuiteInfo(suite.name, str(path), suite.description))
    return infos
