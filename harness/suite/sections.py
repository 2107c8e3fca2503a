"""Readers for each section of a suite file, and the checks that span sections.

Each reader reports what is wrong into the Checker and returns what it could salvage, so one pass
finds every problem. Values come back in canonical types (ints widened to float for float fields)
so that equal points hash equally downstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from harness.suite.points import combinations, variant_view
from harness.suite.task import METRICS, AccuracyConfig, MeasureConfig, Mode
from harness.suite.checks import Checker, describe, did_you_mean, type_hints
from harness.suite.yamlpos import KeyPath, format_path
from harness.tasks import TASKS
from models.config import ConfigError, TransformerConfig
from models.registry import ignored_keys, known_models

# Swept axes that are not model config keys. `compile` (torch.compile the model) may also be a
# variant key: it is how a variant runs, applied to every model alike.
POINT_AXES = ("device", "mode", "seq_len", "batch_size", "compile")
AXIS_DEFAULTS: dict[str, tuple[Any, ...]] = {"device": ("cpu",), "mode": ("forward",), "batch_size": (1,)}
# seq_len of a suite that only measures accuracy and sweeps none: the accuracy task picks its own.
ACCURACY_ONLY_SEQ_LEN = 0
DEFAULT_METRICS = ("time", "memory", "flops")

_DEVICE = re.compile(r"^(cpu|mps|cuda(:[0-9]+)?)$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # labels end up in ids, file names and CLI filters
_REGISTRY_NAME = re.compile(r"^[A-Za-z_]\w*$")
_CALLABLE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_MODEL_HINTS = type_hints(TransformerConfig)
_AXIS_HINTS: dict[str, Any] = {"device": str, "mode": Mode, "seq_len": int, "batch_size": int, "compile": bool,
                               "task": str, **_MODEL_HINTS}


@dataclass(frozen=True)
class Variant:
    """One compared model: a registry model plus config overrides on top of the suite's model."""

    label: str
    model: str                 # registry name ("baseline", "reuse") or "package.module:callable"
    overrides: dict[str, Any]  # model config keys this variant sets
    compile: bool = False      # torch.compile the model before measuring it


@dataclass
class SweepSection:
    axes: dict[str, tuple[Any, ...]]                   # varied as a cartesian product
    zip_groups: tuple[dict[str, tuple[Any, ...]], ...]  # each group's axes varied together
    exclude: tuple[dict[str, tuple[Any, ...]], ...]     # axis -> matched values; all must match
    written: dict[str, KeyPath]                         # axis -> where the suite sets it (for messages)


def model_config(check: Checker, path: KeyPath, section: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Model config keys of `section` (shared model or a variant's overrides), type-checked."""
    hints = {axis: f"a model config key ({axis} is a sweep axis: set it under sweep)" for axis in POINT_AXES}
    known = [*skip, *TransformerConfig.fields()]
    config = {}
    for key in check.known_keys(path, section, known, "model config", hints):
        if key in skip:
            continue
        ok, value = check.value(path + (key,), section[key], _MODEL_HINTS[key])
        if ok:
            config[key] = value
    return config


def read_variants(check: Checker, raw: Any) -> dict[str, Variant]:
    section = check.mapping(("variants",), raw, "variant labels to {model: ..., overrides}")
    if section is None:
        return {}
    if not section:
        check.report(("variants",), "at least one variant", "an empty mapping")
    variants = {}
    for label, spec in section.items():
        path: KeyPath = ("variants", label)
        if not isinstance(label, str) or not _LABEL.match(label):
            check.report(path, "a label of letters, digits, '_', '.', '-'", describe(label))
            continue
        spec = check.mapping(path, spec, "model and config overrides")
        if spec is None:
            continue
        if "model" not in spec:
            check.report(path + ("model",), "a model name (required)", "nothing")
            continue
        model = spec["model"]
        compiled = check.value(path + ("compile",), spec["compile"], bool) if "compile" in spec else (True, False)
        if _model_name_ok(check, path + ("model",), model) and compiled[0]:
            variants[label] = Variant(label, model, model_config(check, path, spec, skip=("model", "compile")),
                                      compiled[1])
    return variants


def _model_name_ok(check: Checker, path: KeyPath, model: Any) -> bool:
    if isinstance(model, str) and _CALLABLE.match(model):
        return True  # third-party model: resolved by the registry when the worker builds it
    if not isinstance(model, str) or not _REGISTRY_NAME.match(model):
        check.report(path, "a registry model name or 'package.module:callable'", describe(model))
        return False
    known = tuple(known_models())
    if model not in known:
        check.report(path, f"one of {', '.join(known)}{did_you_mean(model, known)} "
                           "or 'package.module:callable'", repr(model))
        return False
    return True


def read_metrics(check: Checker, raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        check.report(("metrics",), f"a non-empty list of {', '.join(METRICS)}", describe(raw))
        return ()
    metrics: list[str] = []
    for index, metric in enumerate(raw):
        if metric not in METRICS or not isinstance(metric, str):
            check.report(("metrics", index), f"one of {', '.join(METRICS)}", describe(metric))
        elif metric in metrics:
            check.report(("metrics", index), "each metric once", f"{metric!r} again")
        else:
            metrics.append(metric)
    return tuple(metrics)


def read_measure(check: Checker, raw: Any) -> MeasureConfig | None:
    measure = check.dataclass_section(("measure",), raw, MeasureConfig, "measure")
    if measure is None:
        return None
    check.at_least(("measure", "warmup"), measure.warmup, 0)
    check.at_least(("measure", "min_reps"), measure.min_reps, 1)
    check.at_least(("measure", "max_reps"), measure.max_reps, measure.min_reps)
    check.at_least(("measure", "target_ci"), measure.target_ci, 0, strict=True)
    check.at_least(("measure", "max_seconds"), measure.max_seconds, 0, strict=True)
    check.at_least(("measure", "timeout"), measure.timeout, 0, strict=True)
    check.at_least(("measure", "threads"), measure.threads, 1)
    check.at_least(("measure", "rounds"), measure.rounds, 1)
    if measure.rounds > measure.max_reps >= 1:  # the budget is split across rounds, a step each at least
        check.report(("measure", "rounds"), f"at most measure.max_reps ({measure.max_reps}): every round "
                                            "takes at least one timed step", describe(measure.rounds))
    return measure


def read_accuracy(check: Checker, raw: Any) -> AccuracyConfig | None:
    accuracy = check.dataclass_section(("accuracy",), raw, AccuracyConfig, "accuracy")
    if accuracy is None:
        return None
    if not accuracy.seeds:
        check.report(("accuracy", "seeds"), "at least one seed", "an empty list")
    if not accuracy.task:
        check.report(("accuracy", "task"), "a task name", "an empty string")
    for key in ("train_steps", "eval_every"):
        check.at_least(("accuracy", key), getattr(accuracy, key), 1)
    check.at_least(("accuracy", "lr"), accuracy.lr, 0, strict=True)
    check.at_least(("accuracy", "weight_decay"), accuracy.weight_decay, 0)
    check.at_least(("accuracy", "warmup_steps"), accuracy.warmup_steps, 0)
    return accuracy


# ---- sweep -----------------------------------------------------------------------------------
def read_sweep(check: Checker, raw: Any, metrics: tuple[str, ...]) -> SweepSection:
    result = SweepSection({}, (), (), {})
    section = check.mapping(("sweep",), raw, "axes to lists of values")
    if section is None:
        return result
    known = [*POINT_AXES, *TransformerConfig.fields(), "task", "zip", "exclude"]
    for axis in check.known_keys(("sweep",), section, known, "sweep axis"):
        if axis not in ("zip", "exclude"):
            _add_axis(check, result.axes, result.written, ("sweep", axis), axis, section[axis])
    if "zip" in section:
        result.zip_groups = _read_zip(check, section["zip"], result.written)
    for axis, values in AXIS_DEFAULTS.items():
        if axis not in result.written:
            result.axes[axis] = values
    if "seq_len" not in result.written:
        # Beside accuracy, redundancy is measured on the trained models, on the task's own inputs.
        if "accuracy" in metrics and set(metrics) <= {"accuracy", "redundancy"}:
            result.axes["seq_len"] = (ACCURACY_ONLY_SEQ_LEN,)
        elif metrics:
            check.report(("sweep", "seq_len"), "a list of sequence lengths (required unless metrics "
                                               "is only accuracy, or accuracy and redundancy)", "nothing")
    if "exclude" in section:
        every_axis = {**result.axes, **{a: v for group in result.zip_groups for a, v in group.items()}}
        named = [*result.written, *(axis for axis in AXIS_DEFAULTS if axis not in result.written)]
        result.exclude = _read_exclude(check, section["exclude"], every_axis, named)
    return result


def _add_axis(check: Checker, axes: dict[str, tuple[Any, ...]], written: dict[str, KeyPath],
              path: KeyPath, axis: str, raw: Any) -> None:
    if axis in written:
        check.report(path, "each axis swept in one place only", f"{axis} already swept at "
                     f"{format_path(written[axis])} ({check.line(written[axis])})")
        return
    written[axis] = path
    if not isinstance(raw, list) or not raw:
        check.report(path, "a non-empty list of values (write [x] for a single value)", describe(raw))
        return
    values: list[Any] = []
    for index, item in enumerate(raw):
        ok, value = check.value(path + (index,), item, _AXIS_HINTS[axis])
        if not ok:
            continue
        if axis == "device" and not _DEVICE.match(value):
            check.report(path + (index,), "cpu, cuda, cuda:N or mps", describe(value))
        elif axis == "task" and value not in TASKS:
            check.report(path + (index,), f"an accuracy task ({', '.join(TASKS)})", describe(value))
        elif axis in ("seq_len", "batch_size") and value < 1:
            check.report(path + (index,), "a positive integer", describe(value))
        elif value in values:
            check.report(path + (index,), "distinct values", f"{describe(value)} again")
        else:
            values.append(value)
    if len(values) == len(raw):
        axes[axis] = tuple(values)


def _listed_mappings(check: Checker, key: str, raw: Any, items: str, what: str,
                     empty: str) -> Iterator[tuple[KeyPath, dict[str, Any]]]:
    """The non-empty mappings listed under sweep.<key> with their paths; the rest are reported.

    `items` describes the list ("groups {axis: [values], ...}"), `what` one mapping's keys and
    values, `empty` what an empty mapping should have had.
    """
    if not isinstance(raw, list) or not raw:
        check.report(("sweep", key), f"a non-empty list of {items}", describe(raw))
        return
    for index, item in enumerate(raw):
        path: KeyPath = ("sweep", key, index)
        section = check.mapping(path, item, what)
        if section is None:
            continue
        if not section:
            check.report(path, empty, "an empty mapping")
            continue
        yield path, section


def _read_zip(check: Checker, raw: Any, written: dict[str, KeyPath]) -> tuple[dict[str, tuple[Any, ...]], ...]:
    groups = []
    for path, group_section in _listed_mappings(check, "zip", raw, "groups {axis: [values], ...}",
                                                "axes to equally long lists", "at least one axis"):
        group: dict[str, tuple[Any, ...]] = {}
        known = [*POINT_AXES, *TransformerConfig.fields()]
        for axis in check.known_keys(path, group_section, known, "sweep axis"):
            _add_axis(check, group, written, path + (axis,), axis, group_section[axis])
        lengths = {axis: len(values) for axis, values in group.items()}
        if len(set(lengths.values())) > 1:
            check.report(path, "lists of equal length (zipped axes vary together)",
                         ", ".join(f"{axis} with {n}" for axis, n in lengths.items()))
        elif len(group) == len(group_section):
            groups.append(group)
    return tuple(groups)


def _read_exclude(check: Checker, raw: Any, axes: dict[str, tuple[Any, ...]],
                  named: list[str]) -> tuple[dict[str, tuple[Any, ...]], ...]:
    """Exclude rules over the swept axes (`named`; `axes` holds those whose values are valid)."""
    rules = []
    for path, section in _listed_mappings(check, "exclude", raw, "rules {axis: value or [values]}",
                                          "axes to the values it drops",
                                          "at least one axis (an empty rule would drop every point)"):
        rule: dict[str, tuple[Any, ...]] = {}
        for axis in check.known_keys(path, section, named, "swept axis"):
            if axis not in axes:
                continue  # its values are wrong and already reported
            matched = section[axis] if isinstance(section[axis], list) else [section[axis]]
            values = []
            for item in matched:
                ok, value = check.value(path + (axis,), item, _AXIS_HINTS[axis])
                if ok and value not in axes[axis]:
                    # A value never swept matches nothing: almost certainly a typo.
                    check.report(path + (axis,), "one of the swept values "
                                 + ", ".join(describe(v) for v in axes[axis]), describe(value))
                elif ok:
                    values.append(value)
            if not matched:
                check.report(path + (axis,), "a value or a non-empty list of values", "an empty list")
            elif len(values) == len(matched):
                rule[axis] = tuple(values)
        if len(rule) == len(section):
            rules.append(rule)
    return tuple(rules)


# ---- checks across sections ------------------------------------------------------------------
def check_ownership(check: Checker, model: dict[str, Any], variants: dict[str, Variant],
                    sweep: SweepSection) -> None:
    """A model key has one source: a key both swept and set elsewhere is ambiguous or dead."""
    for key in model:
        if key in sweep.written:
            where = sweep.written[key]
            check.report(("model", key), f"{key} set in one place only",
                         f"it is also swept at {format_path(where)} ({check.line(where)})")
    for label, variant in variants.items():
        if variant.compile and "compile" in sweep.written:
            where = sweep.written["compile"]
            check.report(("variants", label, "compile"), "a key that is either a variant key or swept, not both",
                         f"compile also swept at {format_path(where)} ({check.line(where)})")
        ignored = ignored_keys(variant.model)
        for key in variant.overrides:
            path = ("variants", label, key)
            if key in sweep.written:
                where = sweep.written[key]
                check.report(path, "a key that is either a variant override or swept, not both",
                             f"{key} also swept at {format_path(where)} ({check.line(where)})")
            elif key in ignored:
                check.report(path, f"a key model {variant.model!r} uses", f"{key}, which it ignores")


def check_model_configs(check: Checker, model: dict[str, Any], variants: dict[str, Variant],
                        sweep: SweepSection) -> int:
    """Build every distinct model config the sweep will run; report each invalid one once.

    Returns the number of points, so the caller can reject a sweep that excludes everything.
    """
    points = combinations(sweep.axes, sweep.zip_groups, sweep.exclude)
    tried: set[str] = set()
    reported: set[tuple[str, str]] = set()
    for point in points:
        for label, variant in variants.items():
            config, _ = variant_view(model, variant.model, variant.overrides, point)
            key = repr((label, sorted(config.items())))
            if key in tried:
                continue
            tried.add(key)
            try:
                TransformerConfig.from_dict(config)
            except ConfigError as error:
                path = _source_of(error.field, point, variant, model, sweep)
                if (format_path(path), error.message) not in reported:
                    reported.add((format_path(path), error.message))
                    swept = ", ".join(f"{k}={v}" for k, v in point.items() if k in _MODEL_HINTS)
                    context = f"variant {label!r}" + (f" at {swept}" if swept else "")
                    # ConfigError messages are mostly "expected X, got Y": split them into our fields.
                    split = re.match(r"^expected (.*), got (.*)$", error.message)
                    if split:
                        check.report(path, f"{split[1]} (for {context})", split[2])
                    else:
                        check.report(path, f"a valid model config for {context}", error.message)
    return len(points)


def _source_of(field: str, point: dict[str, Any], variant: Variant, model: dict[str, Any],
               sweep: SweepSection) -> KeyPath:
    """Where the offending value of a rejected config was written."""
    if field in point and field in sweep.written:
        base = sweep.written[field]
        values = sweep.axes.get(field) or next(g[field] for g in sweep.zip_groups if field in g)
        return base + (values.index(point[field]),)
    if field in variant.overrides:
        return ("variants", variant.label, field)
    if field in model:
        return ("model", field)
    return ("variants", variant.label)  # a default that clashes with this variant's combination
