"""The user side of simulated maps: the same methods as a loaded program's maps
(runtime/maps.py), reading the simulation's bytes instead of the kernel's."""
from __future__ import annotations

from pyprobe.dsl.types import ArrayType, Scalar, StructType


def pack(ctype, value) -> bytes:
    if isinstance(ctype, Scalar):
        return int(value).to_bytes(ctype.size, "little", signed=ctype.signed and int(value) < 0)
    if isinstance(ctype, ArrayType) and isinstance(value, (bytes, str)):
        data = value.encode() if isinstance(value, str) else value
        return data[: ctype.size].ljust(ctype.size, b"\0")
    import numpy as np

    return np.asarray(value, dtype=ctype.dtype()).tobytes()


def unpack(ctype, data: bytes):
    if isinstance(ctype, Scalar):
        return int.from_bytes(data, "little", signed=ctype.signed)
    if isinstance(ctype, ArrayType) and getattr(ctype.elem, "name", "") == "char":
        return data.split(b"\0", 1)[0]
    import numpy as np

    return np.frombuffer(data, dtype=ctype.dtype())[0]


class MapView:
    def __init__(self, spec, storage, name: str):
        self.spec = spec
        self.storage = storage
        self.name = name
        self.key_type = spec.key
        self.value_type = spec.value

    def _value_out(self, v):
        return unpack(self.value_type, v)

    def __getitem__(self, key):
        v = self.storage.user_lookup(pack(self.key_type, key))
        if v is None:
            raise KeyError(key)
        return self._value_out(v)

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key, value) -> None:
        self.storage.user_update(pack(self.key_type, key), pack(self.value_type, value))

    def update(self, entries) -> None:
        for key, value in (entries.items() if hasattr(entries, "items") else entries):
            self[key] = value

    def __delitem__(self, key) -> None:
        self.storage.user_delete(pack(self.key_type, key))

    def __contains__(self, key) -> bool:
        return self.get(key) is not None

    def keys(self):
        return [unpack(self.key_type, k) for k, _ in self.storage.entries()]

    def items(self):
        return [(unpack(self.key_type, k), self._value_out(v)) for k, v in self.storage.entries()]

    def values(self):
        return [v for _, v in self.items()]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.storage.entries())

    def clear(self) -> None:
        self.storage.clear()

    def _slot_dtype(self):
        return self.value_type.dtype()

    def _values_bytes(self, entries) -> bytes:
        return b"".join(v for _, v in entries)

    def to_numpy(self):
        import numpy as np

        entries = self.storage.entries()
        keys = np.frombuffer(b"".join(k for k, _ in entries), dtype=self.key_type.dtype())
        values = np.frombuffer(self._values_bytes(entries), dtype=self._slot_dtype())
        return keys, values

    def __repr__(self) -> str:
        return f"<simulated {type(self).__name__} {self.name} {self.spec!r}>"


class ArrayView(MapView):
    def __len__(self) -> int:
        return self.spec.max_entries

    def to_numpy(self):
        return super().to_numpy()[1]


class PerCpuView(MapView):
    """Values per CPU: shape (n, ncpus), as the live per-CPU maps give them."""

    def _value_out(self, cells):
        import numpy as np

        return np.frombuffer(b"".join(cells), dtype=self.value_type.dtype())

    def _slot_dtype(self):
        import numpy as np

        return np.dtype((self.value_type.dtype(), (self.storage.state.ncpus,)))

    def _values_bytes(self, entries) -> bytes:
        return b"".join(b"".join(cells) for _, cells in entries)

    def sum(self):
        keys, values = MapView.to_numpy(self)
        return keys, values.sum(axis=1)


class PerCpuArrayView(PerCpuView):
    def __len__(self) -> int:
        return self.spec.max_entries

    def to_numpy(self):
        return MapView.to_numpy(self)[1]

    def sum(self):
        return self.to_numpy().sum(axis=1)


class HistogramView(MapView):
    @property
    def sectioned(self) -> bool:
        return isinstance(self.key_type, StructType)

    def to_numpy(self):
        keys, values = super().to_numpy()
        if self.sectioned:
            return keys, values
        return values.astype("uint64")

    def counts(self) -> list[int]:
        return [self.get(i, 0) for i in range(self.spec.max_entries)]

    def sections(self) -> dict:
        """{section: counts by slot}, as the live HistogramMap.sections()."""
        import numpy as np

        keys, values = MapView.to_numpy(self)
        names = [n for n in keys.dtype.names if n != "slot"]
        slots = 100 if self.spec.linear else self.spec.LOG2_SLOTS
        out: dict = {}
        for k, v in zip(keys, values):
            section = k[names[0]] if len(names) == 1 else tuple(k[n] for n in names)
            if isinstance(section, bytes):
                section = section.split(b"\0", 1)[0].decode(errors="replace")
            elif isinstance(section, np.integer):
                section = int(section)
            counts = out.setdefault(section, np.zeros(slots, dtype=np.uint64))
            if int(k["slot"]) < len(counts):
                counts[int(k["slot"])] += v
        return out

    def _print(self, log2, val_type, section_header, section_print_fn, strip_leading_zero):
        from pyprobe.runtime import histogram as h

        if self.sectioned:
            fmt = h.format_log2_hist_sections if log2 else h.format_linear_hist_sections
            text = fmt(self.sections(), val_type, section_header=section_header,
                       section_print_fn=section_print_fn, strip_leading_zero=strip_leading_zero)
        else:
            fmt = h.format_log2_hist if log2 else h.format_linear_hist
            text = fmt(self.counts(), val_type, strip_leading_zero=strip_leading_zero)
        print(text, end="")

    def print_log2_hist(self, val_type: str = "value", section_header: str = "Bucket ptr",
                        section_print_fn=None, strip_leading_zero: bool = False) -> None:
        self._print(True, val_type, section_header, section_print_fn, strip_leading_zero)

    def print_linear_hist(self, val_type: str = "value", section_header: str = "Bucket ptr",
                          section_print_fn=None, strip_leading_zero: bool = False) -> None:
        self._print(False, val_type, section_header, section_print_fn, strip_leading_zero)

    def total(self) -> int:
        counts = self.to_numpy() if not self.sectioned else self.to_numpy()[1]
        return int(counts.sum())


class StackView(MapView):
    def walk(self, stack_id: int) -> list[int]:
        if stack_id < 0:
            return []
        frames = self.get(stack_id)
        return [] if frames is None else [int(a) for a in frames if a]


class QueueView:
    """A simulated Queue or Stack: push(v), pop(), peek() (KeyError when empty); values() drains."""

    def __init__(self, spec, storage, name: str):
        self.spec, self.storage, self.name = spec, storage, name

    def push(self, value, flags: int = 0) -> None:
        if self.storage.push(pack(self.spec.value, value), flags) < 0:
            raise OverflowError(f"{self.name} is full ({self.spec.max_entries} values): pop first, "
                                "or push(v, flags=BPF_EXIST) to push out the oldest")

    def _take(self, value, what: str):
        if value is None:
            raise KeyError(f"{what}(): {self.name} is empty")
        return unpack(self.spec.value, bytes(value))

    def pop(self):
        return self._take(self.storage.pop(), "pop")

    def peek(self):
        return self._take(self.storage.peek(), "peek")

    def values(self) -> list:
        out = []
        while self.storage.items:
            out.append(self.pop())
        return out

    def clear(self) -> None:
        self.storage.clear()

    def __repr__(self) -> str:
        return f"<simulated QueueView {self.name} {self.spec!r}>"


def view_for(spec, storage, name: str):
    from pyprobe.dsl.maps import Histogram, Queue, StackTrace

    if isinstance(spec, Queue):
        return QueueView(spec, storage, name)
    if isinstance(spec, StackTrace):
        return StackView(spec, storage, name)
    if isinstance(spec, Histogram):
        return HistogramView(spec, storage, name)
    if spec.per_cpu:
        return (PerCpuArrayView if spec.indexed else PerCpuView)(spec, storage, name)
    return (ArrayView if spec.indexed else MapView)(spec, storage, name)
