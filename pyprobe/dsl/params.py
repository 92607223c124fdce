"""Load-time constants: `target = Param(u32, default=0)`, set with `MyProgram(target=1234)`.

In the kernel they are `const volatile` data in a read-only section of their
own, so the verifier sees constants (dead branches vanish) and the compiled
object is the same for every value: the cache serves all of them.
"""
from __future__ import annotations

from pyprobe.dsl.types import Scalar, StructType, as_ctype

SECTION = ".rodata.pyprobe"


class Param:
    def __init__(self, ctype=None, default: int = 0):
        from pyprobe.dsl.types import u64

        t = as_ctype(ctype if ctype is not None else u64)
        if not isinstance(t, Scalar):
            raise TypeError("a Param is an integer type (u8..u64, s8..s64)")
        self.type: Scalar = t
        from pyprobe.checks import integer

        self.default = integer(default, self.type, "Param default")
        self.name: str | None = None

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        return instance.__dict__.get("_params", {}).get(self.name, self.default)

    def __repr__(self) -> str:
        return f"Param({self.type!r}, default={self.default})"


def params_struct(params: dict[str, Param]) -> StructType:
    return StructType("pp_params", [(name, p.type) for name, p in params.items()])


def pack(params: dict[str, Param], values: dict[str, int]) -> bytes:
    """The section's bytes for these values (defaults for the rest), with C's layout."""
    st = params_struct(params)
    out = bytearray(st.size)
    from pyprobe.checks import integer

    for name, p in params.items():
        v = integer(values.get(name, p.default), p.type, f"Param {name}")
        off = st.offsets[name]
        out[off:off + p.type.size] = v.to_bytes(p.type.size, "little", signed=p.type.signed)
    return bytes(out)
