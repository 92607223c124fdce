"""Which Programs the direct backend (pyprobe/dsl/direct.py) compiles, and why it leaves the
others to clang: every Program class of lessons/, of the Python examples in README.md,
docs/*.md and the API sketch (API.md, when its path is given), and of pyprobe/tools.

    PYTHONPATH=$PWD .venv/bin/python tools/direct_coverage.py [--api /work/shared/API.md] [-v] [--load]

Prints one line per Program (`direct` or the first construct outside the subset) and the
counts per origin and per reason. With --load (root), every Program the direct backend takes
is also loaded with clang made to fail, so a direct object this kernel's verifier refuses
shows as "verifier refused" (a user's load would have fallen back to clang). Translating needs this kernel's tracepoint formats (root);
an example that does not translate here (a probe this kernel lacks, a sketch) is counted as
"does not translate" and left out of the totals.
"""
from __future__ import annotations

import argparse
import collections
import importlib
import importlib.util
import os
import pkgutil
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _programs_of(module) -> list:
    from pyprobe import Program

    out = []
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Program) and value is not Program \
                and value.__module__ == module.__name__:
            out.append(value)
    return out


def _load_file(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def lessons():
    for dirpath, _, files in sorted(os.walk(os.path.join(ROOT, "lessons"))):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                yield os.path.relpath(path, ROOT), lambda path=path, f=f: _load_file(path, "lesson_" + f[:-3])


def tools():
    import pyprobe.tools as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        yield f"pyprobe/tools/{info.name}.py", lambda name=info.name: importlib.import_module(f"pyprobe.tools.{name}")


def examples(paths: list[str], workdir: str):
    """Each ```python block that defines a Program, written to a file of its own (the
    translator reads handler source from files)."""
    n = 0
    for path in paths:
        text = open(path).read()
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
            if "(Program)" not in block:
                continue
            n += 1
            # the part of the block that defines things: stop at the first `with`/loop that runs it
            lines = []
            for line in block.splitlines():
                if re.match(r"(with |for |print\(|prog\.|counts = |src = |obj = )", line):
                    break
                lines.append(line)
            f = os.path.join(workdir, f"example_{n}.py")
            with open(f, "w") as out:
                out.write("\n".join(lines) + "\n")
            yield f"{os.path.basename(path)} block {i + 1}", lambda f=f, n=n: _load_file(f, f"example_{n}")


def judge(cls, load: bool) -> str:
    from pyprobe.dsl import direct

    try:
        source = cls._source()
    except Exception as e:              # noqa: BLE001 - a probe this kernel lacks, a sketch
        return f"does not translate: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
    why = direct.refusal(cls, source)
    if why is None and load:
        return loaded(cls)
    return "direct" if why is None else why


def loaded(cls) -> str:
    """"direct" if this kernel's verifier takes the direct backend's object of cls."""
    from pyprobe.backend import clang

    def refuse(*args, **kwargs):
        raise RuntimeError("the verifier refused the direct object")
    real = clang.compile_c, clang.start_early
    clang.compile_c = clang.start_early = refuse
    try:
        cls().load().close()
        return "direct"
    except Exception as e:              # noqa: BLE001
        return f"verifier refused: {str(e).splitlines()[0][:100]}"
    finally:
        clang.compile_c, clang.start_early = real


def reason_class(why: str) -> str:
    """The reason without the handler's name, for the counts."""
    return re.sub(r"^\w+: ", "", why)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", help="the API sketch (API.md) to read examples from too")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per Program")
    parser.add_argument("--load", action="store_true", help="load what the direct backend takes (root)")
    opts = parser.parse_args()
    if opts.load:
        os.environ["PYPROBE_CACHE_DIR"] = tempfile.mkdtemp(prefix="direct-coverage-")
    docs = [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    if opts.api:
        docs.append(opts.api)
    totals: dict = collections.defaultdict(collections.Counter)
    reasons: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory() as workdir:
        for origin, sources in (("lessons", lessons()), ("examples", examples(docs, workdir)), ("tools", tools())):
            for where, load in sources:
                try:
                    classes = _programs_of(load())
                except Exception as e:      # noqa: BLE001
                    classes, why = [], f"does not import: {type(e).__name__}: {e}"
                    totals[origin]["does not translate"] += 1
                    if opts.verbose:
                        print(f"{where}: {why[:120]}")
                for cls in classes:
                    why = judge(cls, opts.load)
                    if why.startswith("does not translate"):
                        totals[origin]["does not translate"] += 1
                    elif why == "direct":
                        totals[origin]["direct"] += 1
                    else:
                        totals[origin]["clang"] += 1
                        reasons[reason_class(why)] += 1
                    if opts.verbose:
                        print(f"{where}: {cls.__name__}: {why[:140]}")
    print()
    for origin, c in totals.items():
        print(f"{origin:9} direct {c['direct']:3}  clang {c['clang']:3}  (does not translate here: "
              f"{c['does not translate']})")
    print("\nwhy clang (first construct outside the subset):")
    for why, n in reasons.most_common():
        print(f"  {n:3}  {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
