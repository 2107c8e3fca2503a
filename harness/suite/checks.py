"""Generic checks behind validating a YAML input file (a suite, a gate policy): problems with
positions, type conformance, unknown keys, and the one loader that opens such a file.

Validation never stops at the first mistake: every check reports into a `Checker` and returns
what it could salvage, so a user fixing a file sees all of its problems in one go.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Union

import yaml

from harness.errors import InputError
from harness.suite.yamlpos import Document, KeyPath, format_path, load_yaml


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located well enough to fix without searching."""

    file: str          # the file, or "--set <override>" when a command-line override caused it
    path: str          # key path inside the file, e.g. "sweep.mode[1]"; "" for the file as a whole
    line: int | None   # 1-based line in `file`; None when there is no line to point at
    expected: str
    found: str
    # 1-based column, known for YAML syntax errors only (a key's position is its line).
    column: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.line is not None and self.column is not None:
            where += f":{self.column}"  # file:line:column, which editors and terminals jump to
        what = f"{self.path}: " if self.path else ""
        return f"{where}: {what}expected {self.expected}; found {self.found}"


class ProblemsError(InputError):
    """An input file that cannot be used; `.problems` lists everything wrong with it, one per line
    in str(), each line naming its own file and line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def describe(value: Any) -> str:
    """A value as a user would recognise it from their YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return repr(value)
    if isinstance(value, list):
        return f"a list {value!r}" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    return f"{type(value).__name__} {value!r}"  # e.g. a YAML timestamp read as a date


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def type_hints(cls: type) -> dict[str, Any]:
    """Resolved field types of a dataclass (its module uses `from __future__ import annotations`)."""
    return typing.get_type_hints(cls)


def conform(value: Any, hint: Any) -> tuple[bool, Any, str]:
    """Check `value` against a type hint: (ok, value in the hint's canonical type, what hint expects).

    bool is never accepted as a number (YAML `true` is a bool, and `True == 1` in Python), and ints
    are widened to float for float fields so `reuse_ratio: 0` and `0.0` are the same point.
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        return True, value, "any value"
    if origin is Literal:
        options = typing.get_args(hint)
        ok = any(value == o and type(value) is type(o) for o in options)
        return ok, value, "one of " + ", ".join(str(o) for o in options)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(hint))
        descriptions = []
        for arg in args:
            ok, coerced, description = conform(value, arg)
            if ok:
                return True, coerced, description
            descriptions.append(description)
        if nullable:
            descriptions.append("null")
        return value is None and nullable, value, " or ".join(descriptions)
    if hint is bool:
        return isinstance(value, bool), value, "true or false"
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value, "an integer"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value, "a number"
    if hint is str:
        return isinstance(value, str), value, "a string"
    if origin is tuple:
        (item_hint, *_rest) = typing.get_args(hint)
        _, _, item_description = conform(None, item_hint)
        expected = f"a list of {item_description.removeprefix('an ').removeprefix('a ')}s"
        if not isinstance(value, list):
            return False, value, expected
        items = [conform(item, item_hint) for item in value]
        return all(ok for ok, _, _ in items), tuple(c for _, c, _ in items), expected
    if origin is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
        return ok, value, "a mapping with string keys"
    raise TypeError(f"suite validation does not know how to check {hint!r}")


class Checker:
    """Collects problems, citing the file line or the `--set` override that introduced a value."""

    def __init__(self, file: str, doc: Document) -> None:
        self.file = file
        self.doc = doc
        self.problems: list[Problem] = []
        self.origins: dict[KeyPath, str] = {}  # key path -> the --set override that wrote it

    def report(self, path: KeyPath, expected: str, found: str) -> None:
        for end in range(len(path), 0, -1):
            override = self.origins.get(tuple(path[:end]))
            if override is not None:
                self.problems.append(Problem(f"--set {override}", format_path(path), None, expected, found))
                return
        self.problems.append(Problem(self.file, format_path(path), self.doc.line_of(path), expected, found))

    def line(self, path: KeyPath) -> str:
        """How to cite another place in a message: 'line 12' or 'the --set override'."""
        for end in range(len(path), 0, -1):
            if tuple(path[:end]) in self.origins:
                return f"--set {self.origins[tuple(path[:end])]}"
        line = self.doc.line_of(path)
        return f"line {line}" if line is not None else self.file

    def value(self, path: KeyPath, value: Any, hint: Any) -> tuple[bool, Any]:
        ok, coerced, expected = conform(value, hint)
        if not ok:
            self.report(path, expected, describe(value))
        return ok, coerced

    def mapping(self, path: KeyPath, value: Any, what: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.report(path, f"a mapping of {what}", describe(value))
        return None

    def known_keys(self, path: KeyPath, mapping: dict[Any, Any], known: Iterable[str], what: str,
                   hints: dict[str, str] | None = None) -> list[str]:
        """Report keys outside `known` (with a did-you-mean); return the keys that are fine."""
        known = list(known)
        good = []
        for key in mapping:
            if not isinstance(key, str):
                self.report(path + (key,), f"a string key ({what})", describe(key))
            elif key in known:
                good.append(key)
            elif hints and key in hints:
                self.report(path + (key,), hints[key], repr(key))
            else:
                suggestion = did_you_mean(key, known)
                expected = f"a {what} key{suggestion}" if suggestion else f"one of {', '.join(known)}"
                self.report(path + (key,), expected, repr(key))
        return good

    def dataclass_section(self, path: KeyPath, value: Any, cls: type, what: str) -> Any | None:
        """Build dataclass `cls` from a mapping, checking names and types; None if anything was wrong."""
        section = self.mapping(path, value, what)
        if section is None:
            return None
        before = len(self.problems)
        hints = type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        kwargs = {}
        for key in self.known_keys(path, section, names, what):
            ok, coerced = self.value(path + (key,), section[key], hints[key])
            if ok:
                kwargs[key] = coerced
        return cls(**kwargs) if len(self.problems) == before else None

    def at_least(self, path: KeyPath, value: Any, low: float, strict: bool = False) -> None:
        """Range check for a value that already passed its type check."""
        if value is None:
            return
        if value < low or (strict and value == low):
            self.report(path, f"a value {'>' if strict else '>='} {low:g}", describe(value))


def load_checked(path: str | os.PathLike[str], what: str, error: type[ProblemsError]) -> Checker:
    """Read and parse the YAML file at `path` (a `what`: "suite", "policy"), ready to be checked.

    A file that cannot be read or parsed has one problem and nothing else to check: raised at once
    as `error`. Repeated keys are reported into the returned Checker, which goes on checking.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error([Problem(file, "", None, f"a {what} file", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error([Problem(file, "", None, f"a readable UTF-8 {what} file", str(exc))]) from None
    try:
        doc = load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        raise error([_syntax_problem(file, exc)]) from None
    check = Checker(file, doc)
    for key_path, _line, first in doc.duplicates:
        check.report(key_path, f"each key once (first written at line {first})", f"{format_path(key_path)} again")
    return check


def _syntax_problem(file: str, error: yaml.MarkedYAMLError) -> Problem:
    """A YAML syntax error as a Problem at the line and column PyYAML points to."""
    mark = error.problem_mark or error.context_mark
    found = error.problem or error.context or "invalid YAML"
    if mark is None:
        return Problem(file, "", None, "valid YAML", found)
    return Problem(file, "", mark.line + 1, "valid YAML", found, column=mark.column + 1)
