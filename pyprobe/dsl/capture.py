"""Find a handler's source and AST, with line and column numbers of its file.

The whole file is parsed (once, cached by mtime) so every node keeps the
columns the user sees; this also works for code in linecache (REPL cells).
"""
from __future__ import annotations

import ast
import linecache

from pyprobe.errors import Location, TranslationError

_trees: dict[str, tuple[object, ast.Module]] = {}


def _module_tree(filename: str) -> ast.Module:
    lines = linecache.getlines(filename)
    if not lines:
        raise TranslationError(f"cannot read the source of {filename}: pyprobe translates handlers "
                               "from their source, so define them in a file or a notebook cell")
    stamp = (len(lines), hash(lines[0]), hash(lines[-1]))
    cached = _trees.get(filename)
    if cached and cached[0] == stamp:
        return cached[1]
    tree = ast.parse("".join(lines), filename)
    _trees[filename] = (stamp, tree)
    return tree


def function_ast(func) -> tuple[str, ast.FunctionDef]:
    """The file name and FunctionDef node of a Python function."""
    code = func.__code__
    filename = code.co_filename
    linecache.checkcache(filename)
    tree = _module_tree(filename)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == func.__name__:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if first == code.co_firstlineno or node.lineno == code.co_firstlineno:
                if isinstance(node, ast.AsyncFunctionDef):
                    raise TranslationError("a handler cannot be async", Location(filename, node.lineno, node.col_offset))
                return filename, node
    raise TranslationError(f"cannot find the source of {func.__qualname__} in {filename}")
