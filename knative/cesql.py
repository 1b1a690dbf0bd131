"""A parser for CloudEvents SQL v1 expressions, as far as Knative's Trigger webhook needs one: to say
whether a `filters[].cesql` expression parses, and where it does not. It evaluates nothing. Pure."""

from __future__ import annotations

import re

KEYWORDS = {"AND", "OR", "XOR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "FALSE"}
_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<string>'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\")"
    r"|(?P<int>[0-9]+)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|<>|!=|[=<>+\-*/%(),])"
    r")"
)
ATTRIBUTE = re.compile(r"^[a-zA-Z0-9]+$")
FUNCTION = re.compile(r"^[A-Z][A-Z_]*$")
# binding powers: logic < comparison < additive < multiplicative < LIKE / IN
BINARY = {
    "AND": 1,
    "OR": 1,
    "XOR": 1,
    "=": 2,
    "!=": 2,
    "<>": 2,
    "<": 2,
    "<=": 2,
    ">": 2,
    ">=": 2,
    "+": 3,
    "-": 3,
    "*": 4,
    "/": 4,
    "%": 4,
}
POSTFIX_BP = 5
PREFIX_BP = 6


class CesqlError(ValueError):
    pass


def tokenize(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise CesqlError(f"unexpected character {text[pos:].lstrip()[:1]!r} at position {pos}")
        kind = m.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        value, start = m.group(kind), m.start(kind)
        if kind == "word" and value in KEYWORDS:
            kind = "keyword"
        out.append((kind, value, start))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, ahead: int = 0) -> tuple[str, str, int] | None:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else None

    def next_is(self, value: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[1] == value

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise CesqlError("the expression ends too early")
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        tok = self.take()
        if tok[1] != value:
            raise CesqlError(f"expected {value!r} at position {tok[2]}, got {tok[1]!r}")

    def expression(self, min_bp: int = 0) -> None:
        self.prefix()
        while (tok := self.peek()) is not None:
            value = tok[1]
            nxt = self.peek(1)
            negated = value == "NOT" and nxt is not None and nxt[1] in ("LIKE", "IN")
            op = nxt[1] if negated and nxt is not None else value
            if op in ("LIKE", "IN"):
                if min_bp > POSTFIX_BP:
                    return
                self.i += 2 if negated else 1
                self.like_pattern() if op == "LIKE" else self.set_expression()
                continue
            bp = BINARY.get(value) if tok[0] in ("op", "keyword") else None
            if bp is None or bp <= min_bp:
                if bp is None and value not in (")", ","):
                    raise CesqlError(f"unexpected {value!r} at position {tok[2]}")
                return
            self.i += 1
            self.expression(bp)

    def prefix(self) -> None:
        kind, value, at = self.take()
        if value in ("NOT", "-"):
            self.expression(PREFIX_BP)
        elif value == "EXISTS":
            kind, name, at = self.take()
            if kind != "word" or not ATTRIBUTE.match(name):
                raise CesqlError(f"EXISTS needs an attribute name at position {at}, got {name!r}")
        elif value == "(":
            self.expression()
            self.expect(")")
        elif kind in ("string", "int") or value in ("TRUE", "FALSE"):
            return
        elif kind == "word" and (nxt := self.peek()) is not None and nxt[1] == "(":
            if not FUNCTION.match(value):
                raise CesqlError(f"function name {value!r} at position {at} must be upper case letters and '_'")
            self.i += 1
            if self.next_is(")"):
                self.i += 1
                return
            self.arguments()
        elif kind == "word":
            if not ATTRIBUTE.match(value):
                raise CesqlError(f"attribute name {value!r} at position {at} must be letters and digits")
        else:
            raise CesqlError(f"unexpected {value!r} at position {at}")

    def arguments(self) -> None:
        self.expression()
        while self.next_is(","):
            self.i += 1
            self.expression()
        self.expect(")")

    def like_pattern(self) -> None:
        kind, value, at = self.take()
        if kind != "string":
            raise CesqlError(f"LIKE needs a string pattern at position {at}, got {value!r}")

    def set_expression(self) -> None:
        self.expect("(")
        self.arguments()


def parse_problems(expression: str) -> list[str]:
    """Why `expression` is not a CESQL v1 expression (empty when it parses)."""
    if not isinstance(expression, str) or not expression.strip():
        return ["the CESQL expression is empty"]
    try:
        parser = _Parser(expression)
        parser.expression()
        leftover = parser.peek()
        if leftover is not None:
            raise CesqlError(f"unexpected {leftover[1]!r} at position {leftover[2]}")
    except CesqlError as exc:
        return [f"CESQL {expression!r} does not parse: {exc}"]
    return []
