"""A small builder of C text: indentation, blocks and #line directives."""
from __future__ import annotations

from contextlib import contextmanager


def c_string(text: str) -> str:
    """A C string literal with the same bytes as the Python str."""
    out = []
    for ch in text.encode():
        c = chr(ch)
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif 32 <= ch < 127:
            out.append(c)
        else:
            out.append(f"\\{ch:03o}")
    return '"' + "".join(out) + '"'


def condition(code: str) -> str:
    """`code` in the one pair of parentheses an `if` needs: clang warns of `if ((a == b))`."""
    if code.startswith("(") and code.endswith(")"):
        depth = 0
        for i, ch in enumerate(code):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                if i == len(code) - 1:
                    return code                     # one pair already encloses the whole
                break
    return f"({code})"


class CBuilder:
    def __init__(self, indent: int = 0):
        self.lines: list[str] = []
        self.depth = indent

    def line(self, text: str = "") -> None:
        self.lines.append(("    " * self.depth + text) if text else "")

    def directive(self, lineno: int, filename: str) -> None:
        """`#line` so clang diagnostics and BTF line info name the Python line."""
        self.lines.append(f'#line {lineno} {c_string(filename)}')

    @contextmanager
    def block(self, header: str):
        self.line(header + " {")
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            self.line("}")

    def extend(self, other: "CBuilder") -> None:
        self.lines.extend(other.lines)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
