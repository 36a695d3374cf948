"""Compiled matchers behind ``bot.policy``: argument operators, e-mail domains, globs. Pure.

Semantics (written down here because operators rely on them when they write allowlists):

* An operator applied to a **list** value holds only when it holds for *every* element; an empty list never
  satisfies an operator. ``not`` negates the whole inner spec applied to the whole value, so
  ``not: {domain_in: [a.com]}`` holds when at least one recipient is outside ``a.com`` (or there are none) —
  the allowlist pattern. Several operators in one spec must all hold.
* A **missing** field satisfies no operator; under ``not`` it therefore satisfies the negation
  (``not: {eq: x}`` holds when the field is absent, and an allowlist rule denies a mail without ``to``).
* A field name may be a dotted path: ``payment.amount`` reads ``args["payment"]["amount"]``, a decimal
  segment indexes a list (``to.0``); a literal key ``"payment.amount"`` in the args wins over the path.
* ``eq`` and ``in`` follow JSON equality: ``true`` is not ``1``, but ``1`` equals ``1.0``. ``eq`` takes one
  value (a list operand is refused: list-valued args are compared element by element; use ``in``).
* ``gt``/``gte``/``lt``/``lte`` hold for JSON numbers only; a string such as ``"600"`` is not a number.
* ``glob`` is ``fnmatch`` syntax, case-sensitive, on the whole string (``*`` crosses ``/``); ``regex`` is
  ``re.search`` (anchor with ``^``/``$`` to match whole strings); both hold for strings only.
* ``domain_in`` compares the domain of each address case-insensitively and exactly: ``mail.a.com`` is *not*
  ``a.com`` unless listed, so an allowlist never grows by itself. Addresses may be bare (``a@b.com``) or
  name-addr (``Name <a@b.com>``, quoted names may contain commas); a string holding several addresses
  separated by ``,`` or ``;`` counts as a list. Anything that does not parse as one plain address (comments,
  unbalanced quotes or brackets, ``a@evil.com@b.com``) is a non-matching element.
"""

from __future__ import annotations

import abc
import fnmatch
import functools
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

Test = Callable[[Any], bool]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()
_NUMBERS: Final = (int, float)
_SEQUENCES: Final = (list, tuple)


def glob_test(pattern: str) -> Callable[[str], bool]:
    """A precompiled, case-sensitive ``fnmatch`` test for one string."""
    if not any(c in pattern for c in "*?["):
        return lambda s: s == pattern
    match = re.compile(fnmatch.translate(pattern)).match
    return lambda s: match(s) is not None


def lookup(args: Mapping[str, Any], key: str, path: tuple[str, ...]) -> Any:
    """The value at ``key``: a literal key first, else the dotted path (``payment.amount``, ``to.0``)."""
    value = args.get(key, MISSING)
    if value is not MISSING or len(path) == 1:
        return value
    return walk(args, path)


def walk(args: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path: mapping keys, and decimal indexes into lists; MISSING when absent."""
    current: Any = args.get(path[0], MISSING)
    for segment in path[1:]:
        if current is MISSING:
            return MISSING
        if isinstance(current, dict):
            current = current.get(segment, MISSING)
        elif isinstance(current, list) and segment.isascii() and segment.isdigit():
            index = int(segment)
            current = current[index] if index < len(current) else MISSING
        else:
            return MISSING
    return current


def _short(value: Any) -> str:
    text = "missing" if value is MISSING else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _every(elem: Test, values: Sequence[Any]) -> bool:
    """The list rule: a list satisfies an operator when it is non-empty and every element does."""
    if not values:
        return False
    for element in values:  # noqa: SIM110 (hot path: a generator costs more than the check)
        if not elem(element):
            return False
    return True


class Op(abc.ABC):
    """One operator of an argument spec (``gt: 500``); ``test`` applies it to a whole argument value."""

    __slots__ = ("name", "operand", "test")

    def __init__(self, name: str, operand: Any, test: Test) -> None:
        self.name = name
        self.operand = operand
        self.test = test

    def describe(self) -> str:
        return f"{self.name} {self.operand!r}"

    @abc.abstractmethod
    def why_not(self, value: Any) -> str:
        """Why the operator does not hold for ``value`` (called only when it does not)."""


class Leaf(Op):
    """An operator defined on single values (``elem``) and lifted to lists by the every-element rule.

    ``test`` is written out per operator, with the single-value case inline: it runs for every candidate
    rule of every evaluation, and one Python call fewer is most of the budget."""

    __slots__ = ("elem",)

    def __init__(self, name: str, operand: Any, elem: Test, test: Test) -> None:
        super().__init__(name, operand, test)
        self.elem = elem

    def why_not(self, value: Any) -> str:
        if value is MISSING:
            return "the argument is missing"
        if isinstance(value, (list, tuple)):
            if not value:
                return "the list is empty"
            for i, element in enumerate(value):
                if not self.elem(element):
                    return f"element {i}: {self._fails(element)}"
        return self._fails(value)

    def _fails(self, element: Any) -> str:
        text = _short(element)
        if self.name in _SIGNS:
            if element.__class__ not in _NUMBERS:
                return f"{text} is not a number"
            return f"{text} is not {_SIGNS[self.name]} {self.operand!r}"
        if self.name in ("glob", "regex") and not isinstance(element, str):
            return f"{text} is not a string"
        verb = {"eq": "is not equal to", "in": "is not one of", "glob": "does not match glob"}
        return f"{text} {verb.get(self.name, 'does not match regex')} {self.operand!r}"


_SIGNS: Final = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def eq_op(operand: Any) -> Op:
    is_bool = operand.__class__ is bool

    def elem(e: Any) -> bool:
        return bool(e == operand) and (e.__class__ is bool) is is_bool

    def test(value: Any) -> bool:
        if value.__class__ in _SEQUENCES:
            return _every(elem, value)
        return bool(value == operand) and (value.__class__ is bool) is is_bool

    return Leaf("eq", operand, elem, test)


def in_op(operand: Sequence[Any]) -> Op:
    # JSON equality: booleans never equal numbers, although True == 1 in Python.
    keys = frozenset((v.__class__ is bool, v) for v in operand)

    def elem(e: Any) -> bool:
        try:
            return (e.__class__ is bool, e) in keys
        except TypeError:  # an object or a list is never one of the listed plain values
            return False

    def test(value: Any) -> bool:
        if value.__class__ in _SEQUENCES:
            return _every(elem, value)
        return elem(value)

    return Leaf("in", list(operand), elem, test)


def _string_op(name: str, pattern: str, find: Callable[[str], object]) -> Op:
    def elem(e: Any) -> bool:
        return e.__class__ is str and find(e) is not None

    def test(value: Any) -> bool:
        if value.__class__ is str:
            return find(value) is not None
        if value.__class__ in _SEQUENCES:
            return _every(elem, value)
        return False

    return Leaf(name, pattern, elem, test)


def glob_op(pattern: str) -> Op:
    return _string_op("glob", pattern, re.compile(fnmatch.translate(pattern)).match)


def regex_op(pattern: str) -> Op:
    return _string_op("regex", pattern, re.compile(pattern).search)


def compare_op(name: str, bound: float) -> Op:
    compare = _COMPARE[name]

    def elem(e: Any) -> bool:
        return e.__class__ in _NUMBERS and compare(e, bound)

    def test(value: Any) -> bool:
        cls = value.__class__
        if cls is int or cls is float:
            return compare(value, bound)
        if cls in _SEQUENCES:
            return _every(elem, value)
        return False

    return Leaf(name, bound, elem, test)


_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le,
}


class DomainIn(Op):
    """``domain_in``: every address in the value (list or comma-separated string) has a listed domain."""

    __slots__ = ("domains",)

    def __init__(self, domains: Sequence[str]) -> None:
        self.domains = frozenset(domains)
        allowed = self.domains

        def test(value: Any) -> bool:
            if value.__class__ is str:
                texts: Sequence[Any] = (value,)
            elif value.__class__ in _SEQUENCES and value:
                texts = value
            else:
                return False
            for text in texts:
                if text.__class__ is not str:
                    return False
                found = _split_cached(text) if len(text) <= _CACHED_TEXT_MAX else _split_addresses(text)
                if not found:
                    return False
                for domain in found:
                    if domain not in allowed:
                        return False
            return True

        super().__init__("domain_in", sorted(self.domains), test)

    def why_not(self, value: Any) -> str:
        if value is MISSING:
            return "the argument is missing"
        found = email_domains(value)
        if not found:
            return f"{_short(value)} holds no e-mail address"
        for i, domain in enumerate(found):
            if domain is None:
                return f"address {i} of {_short(value)} is not a plain e-mail address"
            if domain not in self.domains:
                return f"address {i} has domain {domain!r}, which is not one of {self.operand!r}"
        return "every address is allowed"  # unreachable when called as documented


class Not(Op):
    """``not``: the inner spec (all its operators) does not hold for the whole value."""

    __slots__ = ("inner",)

    def __init__(self, inner: Sequence[Op]) -> None:
        self.inner = tuple(inner)
        held = all_of(self.inner)
        super().__init__("not", None, lambda value: not held(value))

    def describe(self) -> str:
        return "not {" + ", ".join(op.describe() for op in self.inner) + "}"

    def why_not(self, value: Any) -> str:
        inner = ", ".join(op.describe() for op in self.inner)
        return f"{_short(value)} satisfies {inner}, which is negated"


def all_of(ops: Sequence[Op]) -> Test:
    """A test that holds when every operator holds."""
    tests = tuple(op.test for op in ops)
    if len(tests) == 1:
        return tests[0]

    def test(value: Any) -> bool:
        for t in tests:  # noqa: SIM110 (hot path: a generator costs more than the check)
            if not t(value):
                return False
        return True

    return test


class ArgCheck:
    """The operators on one argument field; ``test(value)`` applies them all to the field's value."""

    __slots__ = ("dotted", "key", "ops", "path", "test")

    def __init__(self, key: str, ops: Sequence[Op]) -> None:
        self.key = key
        self.path = tuple(key.split("."))
        self.dotted = self.path if len(self.path) > 1 else None
        self.ops = tuple(ops)
        self.test = all_of(self.ops)

    def first_failure(self, args: Mapping[str, Any]) -> tuple[str, str] | None:
        """``(operator, why)`` for the first operator that does not hold, or None."""
        value = lookup(args, self.key, self.path)
        for op in self.ops:
            if not op.test(value):
                return op.name, op.why_not(value)
        return None


# ---------------------------------------------------------------- e-mail addresses

_DOMAIN = re.compile(r"[\w-]+(?:\.[\w-]+)*")
_SPECIAL = re.compile(r'[,;<>"]').search
_SPACE = re.compile(r"\s").search
_CACHED_TEXT_MAX = 512


def email_domains(value: Any) -> tuple[str | None, ...]:
    """Lower-cased domains of the addresses in ``value``; None for an element that is not an address."""
    if isinstance(value, str):
        return _addresses(value)
    if isinstance(value, (list, tuple)):
        found: list[str | None] = []
        for element in value:
            parsed = _addresses(element) if isinstance(element, str) else ()
            found.extend(parsed if parsed else (None,))
        return tuple(found)
    return ()


def _addresses(text: str) -> tuple[str | None, ...]:
    # Many rules test the same recipients in one evaluation, and agents repeat them: memoise short strings.
    if len(text) <= _CACHED_TEXT_MAX:
        return _split_cached(text)
    return _split_addresses(text)


def _split_addresses(text: str) -> tuple[str | None, ...]:
    if _SPECIAL(text) is None:
        addr = text.strip()
        return (_domain_of(addr),) if addr else ()
    pieces: list[tuple[int, int, list[int], list[int]]] = []
    start, quoted, escaped = 0, False, False
    opens: list[int] = []
    closes: list[int] = []
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            opens.append(i)
        elif c == ">":
            closes.append(i)
        elif c in ",;" and len(opens) == len(closes):
            pieces.append((start, i, opens, closes))
            start, opens, closes = i + 1, [], []
    if quoted or escaped:
        return (None,)
    pieces.append((start, len(text), opens, closes))
    found: list[str | None] = []
    for begin, end, lt, gt in pieces:
        if not text[begin:end].strip():
            continue
        if not lt and not gt:
            found.append(_domain_of(text[begin:end].strip()))
        elif len(lt) == 1 and len(gt) == 1 and lt[0] < gt[0] and not text[gt[0] + 1 : end].strip():
            found.append(_domain_of(text[lt[0] + 1 : gt[0]].strip()))
        else:
            found.append(None)
    return tuple(found)


_split_cached = functools.lru_cache(maxsize=4096)(_split_addresses)


def _domain_of(addr: str) -> str | None:
    local, at, domain = addr.rpartition("@")
    if not at or not local or _SPACE(addr) is not None:
        return None
    if "@" in local and not (len(local) > 1 and local[0] == local[-1] == '"'):
        return None  # "a@evil.com@b.com": mail software disagrees on where this goes
    domain = domain.lower().removesuffix(".")
    return domain if _DOMAIN.fullmatch(domain) else None


def normalise_domain(domain: str) -> str:
    return domain.strip().lower().removesuffix(".")


def is_domain(domain: str) -> bool:
    return _DOMAIN.fullmatch(domain) is not None
