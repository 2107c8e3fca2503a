"""The points of a sweep, and what one variant sees at each.

A *point* is one combination of swept values: the cartesian product of the plain axes, times the
zip groups (axes varied together), minus excluded combinations. Validation (sections.py) builds
every point's model config to check it, and expansion (sweep.py) turns the same points into
tasks, so both read them from here.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

from models.config import TransformerConfig
from models.registry import ignored_keys

Point = dict[str, Any]  # axis -> value, for one combination of swept values


def combinations(sweep: Mapping[str, Sequence[Any]],
                 zip_groups: Sequence[Mapping[str, Sequence[Any]]] = (),
                 exclude: Sequence[Mapping[str, Sequence[Any]]] = ()) -> list[Point]:
    """Every point of the sweep, in a deterministic order (plain axes first, as written).

    An exclude rule maps axes to the values it matches; a point matching every axis of a rule is
    dropped.
    """
    factors: list[list[Point]] = [[{axis: value} for value in values] for axis, values in sweep.items()]
    for group in zip_groups:
        length = len(next(iter(group.values())))
        factors.append([{axis: values[i] for axis, values in group.items()} for i in range(length)])
    points = []
    for parts in itertools.product(*factors):
        point: Point = {}
        for part in parts:
            point.update(part)
        if not any(all(axis in point and point[axis] in values for axis, values in rule.items())
                   for rule in exclude):
            points.append(point)
    return points


def variant_view(shared: Mapping[str, Any], model: str, overrides: Mapping[str, Any],
                 point: Point) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model config, axes) of one variant at one point, with keys the model ignores dropped.

    Ignored keys are dropped from the shared config too: a baseline must not carry (and report)
    a reuse_ratio it does not apply.
    """
    ignored = ignored_keys(model)
    fields = set(TransformerConfig.fields())
    axes = {axis: value for axis, value in point.items() if axis not in ignored}
    config = {k: v for k, v in {**shared, **overrides}.items() if k not in ignored}
    config.update({axis: value for axis, value in axes.items() if axis in fields})
    return config, axes
