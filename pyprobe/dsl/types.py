"""Types shared by both sides: each gives its C declaration and its numpy dtype.

`u32`, `char[16]` and `Struct` subclasses mean the same bytes in the kernel
and in Python, so results are read with one `np.frombuffer`.
"""
from __future__ import annotations

TYPE_CHECKING = False      # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    import numpy as np


class CType:
    size: int
    align: int

    def c_decl(self, name: str) -> str:
        """A declaration of `name` with this type, e.g. 'char comm[16]'."""
        return f"{self.c_name} {name}"

    def pointer_decl(self, name: str) -> str:
        """A declaration of `name` as a pointer to this type: 'struct Event *e', 'char (*s)[16]'."""
        return f"{self.c_name} *{name}"

    @property
    def c_name(self) -> str:  # pragma: no cover - every subclass sets it
        raise NotImplementedError

    def dtype(self):
        raise NotImplementedError

    def __getitem__(self, n: int) -> "ArrayType":
        if not isinstance(n, int) or n <= 0:
            raise TypeError(f"array length must be a positive int, not {n!r}")
        return ArrayType(self, n)


class Scalar(CType):
    """A fixed-width integer: u8..u64, s8..s64, char, bool."""

    def __init__(self, name: str, c_name: str, size: int, signed: bool):
        self.name = name
        self._c = c_name
        self.size = self.align = size
        self.signed = signed

    @property
    def c_name(self) -> str:
        return self._c

    def dtype(self):
        import numpy as np

        if self.name == "char":
            return np.dtype("S1")
        if self.name == "bool":
            return np.dtype("?")
        return np.dtype(("<i" if self.signed else "<u") + str(self.size))

    def __reduce__(self):
        # unpickle to the one instance, so `t is u32` holds for cached translations
        return (_scalar_named, (self.name,))

    def wrap(self, value: int) -> int:
        """Python's view of a C cast: truncate to the width, then sign."""
        bits = 8 * self.size
        value &= (1 << bits) - 1
        if self.signed and value >> (bits - 1):
            value -= 1 << bits
        return value

    def __call__(self, value=0):
        # Outside the kernel a cast still means what it means in C.
        return self.wrap(int(value))

    def __repr__(self) -> str:
        return self.name

    @property
    def max(self) -> int:
        return (1 << (8 * self.size - (1 if self.signed else 0))) - 1


class ArrayType(CType):
    def __init__(self, elem: CType, n: int):
        self.elem = elem
        self.n = n
        self.size = elem.size * n
        self.align = elem.align

    @property
    def c_name(self) -> str:
        return f"{self.elem.c_name}[{self.n}]"

    def c_decl(self, name: str) -> str:
        return self.elem.c_decl(f"{name}[{self.n}]")

    def pointer_decl(self, name: str) -> str:
        return self.c_decl(f"(*{name})")

    def __call__(self) -> "np.ndarray":
        """`u8[4]()`, a zeroed array in a handler; outside the kernel, the same zeroed bytes as numpy."""
        import numpy as np

        return np.zeros((), self.dtype()) if self.elem is char else np.zeros(self.n, self.elem.dtype())

    def dtype(self):
        import numpy as np

        if self.elem is char:
            return np.dtype(f"S{self.n}")
        return np.dtype((self.elem.dtype(), (self.n,)))

    def __repr__(self) -> str:
        return f"{self.elem!r}[{self.n}]"

    def __eq__(self, other) -> bool:
        return isinstance(other, ArrayType) and other.elem == self.elem and other.n == self.n

    def __hash__(self) -> int:
        return hash((self.elem, self.n))


class PointerType(CType):
    """A pointer, to a pyprobe type or to a kernel type named by its C spelling."""

    size = align = 8

    def __init__(self, target, user: bool = False):
        self.target = target          # CType, or a C type name such as 'struct task_struct'
        self.user = user              # points into user memory

    @property
    def c_name(self) -> str:
        inner = self.target.c_name if isinstance(self.target, CType) else self.target
        return f"{inner} *"

    def c_decl(self, name: str) -> str:
        return f"{self.c_name}{name}"

    def dtype(self):
        import numpy as np

        return np.dtype("<u8")

    def __repr__(self) -> str:
        return f"pointer({self.c_name.strip()})"


class KernelPointer(PointerType):
    """A pointer to a kernel type known from BTF; its members read as CO-RE relocations."""

    def __init__(self, btf_id: int, c_name: str):
        super().__init__(c_name)
        self.btf_id = btf_id

    def __eq__(self, other) -> bool:
        return isinstance(other, KernelPointer) and other.btf_id == self.btf_id

    def __hash__(self) -> int:
        return hash(("kptr", self.btf_id))


u8 = Scalar("u8", "__u8", 1, False)
u16 = Scalar("u16", "__u16", 2, False)
u32 = Scalar("u32", "__u32", 4, False)
u64 = Scalar("u64", "__u64", 8, False)
s8 = Scalar("s8", "__s8", 1, True)
s16 = Scalar("s16", "__s16", 2, True)
s32 = Scalar("s32", "__s32", 4, True)
s64 = Scalar("s64", "__s64", 8, True)
char = Scalar("char", "char", 1, True)
bool_ = Scalar("bool", "_Bool", 1, False)

SCALARS = {t.name: t for t in (u8, u16, u32, u64, s8, s16, s32, s64, char, bool_)}


def _scalar_named(name: str) -> Scalar:
    return SCALARS[name]


def scalar_for(size: int, signed: bool) -> Scalar:
    """The fixed-width integer of a kernel field with this size and signedness."""
    return {1: (u8, s8), 2: (u16, s16), 4: (u32, s32), 8: (u64, s64)}[size][signed]


def common_type(a: Scalar, b: Scalar) -> Scalar:
    """C's usual arithmetic conversions, for our fixed-width types."""
    size = max(a.size, b.size, 4)          # integer promotion to int
    if a.size == b.size:
        signed = a.signed and b.signed
    else:
        signed = (a if a.size > b.size else b).signed
    if size == 4 and a.size < 4 and b.size < 4:
        signed = True                      # both promote to int
    return scalar_for(size, signed)


class StructType(CType):
    """The layout of a Struct subclass: C rules for offsets, padding and alignment."""

    def __init__(self, name: str, fields: list[tuple[str, CType]]):
        self.name = name
        self.fields = fields
        self.offsets: dict[str, int] = {}
        offset = 0
        align = 1
        for fname, ftype in fields:
            offset = (offset + ftype.align - 1) // ftype.align * ftype.align
            self.offsets[fname] = offset
            offset += ftype.size
            align = max(align, ftype.align)
        self.align = align
        self.size = (offset + align - 1) // align * align
        self.field_types = dict(fields)

    @property
    def c_name(self) -> str:
        return f"struct {self.name}"

    def __repr__(self) -> str:
        return f"struct {self.name}"

    def c_definition(self) -> str:
        body = "".join(f"    {t.c_decl(n)};\n" for n, t in self.fields)
        return f"struct {self.name} {{\n{body}}};\n"

    def dtype(self):
        import numpy as np

        return np.dtype({
            "names": [n for n, _ in self.fields],
            "formats": [t.dtype() for _, t in self.fields],
            "offsets": [self.offsets[n] for n, _ in self.fields],
            "itemsize": self.size,
        })


class _StructMeta(type):
    __pp_type__: StructType          # the layout, set on each subclass of Struct

    def __new__(mcls, name, bases, ns):
        cls = super().__new__(mcls, name, bases, ns)
        if bases:                      # not Struct itself
            cls.__pp_type__ = _layout_of(cls)
        return cls

    # Struct subclasses stand for their type in maps and casts.
    @property
    def size(cls) -> int:
        return cls.__pp_type__.size

    def __getitem__(cls, n: int) -> "ArrayType":
        """`Event[4]`: an array of structs, as `u64[4]`."""
        return cls.__pp_type__[n]


class Struct(metaclass=_StructMeta):
    """Subclass with annotated fields: `class Event(Struct): pid: u32; comm: char[16]`."""

    @classmethod
    def dtype(cls):
        return cls.__pp_type__.dtype()


def _layout_of(cls) -> StructType:
    import sys

    module_globals = vars(sys.modules.get(cls.__module__, sys))
    fields = []
    for fname, ann in cls.__dict__.get("__annotations__", {}).items():
        if isinstance(ann, str):
            ann = eval(ann, module_globals, dict(vars(cls)))
        fields.append((fname, as_ctype(ann)))
    if not fields:
        raise TypeError(f"Struct {cls.__name__} has no annotated fields")
    return StructType(cls.__name__, fields)


def has_padding(t: CType) -> bool:
    """Whether a struct (or an array of them) has bytes no field covers."""
    if isinstance(t, ArrayType):
        return has_padding(t.elem)
    if not isinstance(t, StructType):
        return False
    return sum(f.size for _, f in t.fields) != t.size or any(has_padding(f) for _, f in t.fields)


def as_ctype(t) -> CType:
    """Accept a CType, a Struct subclass, or a name like 'u32'."""
    if isinstance(t, CType):
        return t
    if isinstance(t, type) and issubclass(t, Struct) and t is not Struct:
        return t.__pp_type__
    if isinstance(t, str) and t in SCALARS:
        return SCALARS[t]
    raise TypeError(f"{t!r} is not a pyprobe type (use u8..u64, s8..s64, char[N] or a Struct)")
