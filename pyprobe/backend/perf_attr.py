"""struct perf_event_attr packed from named fields (bcc's Perf.perf_event_attr for
attach_perf_event_raw): the fields perf_event_open(2) documents, flags by name."""
from __future__ import annotations

import struct

# (name, offset, struct format) of the fields before the flag bits and after them
_FIELDS = {"type": (0, "I"), "config": (8, "Q"), "sample_period": (16, "Q"), "sample_freq": (16, "Q"),
           "sample_type": (24, "Q"), "read_format": (32, "Q"), "wakeup_events": (48, "I"),
           "wakeup_watermark": (48, "I"), "bp_type": (52, "I"), "config1": (56, "Q"), "bp_addr": (56, "Q"),
           "config2": (64, "Q"), "bp_len": (64, "Q"), "branch_sample_type": (72, "Q"),
           "sample_regs_user": (80, "Q"), "sample_stack_user": (88, "I"), "clockid": (92, "i"),
           "sample_regs_intr": (96, "Q"), "aux_watermark": (104, "I"), "sample_max_stack": (108, "H")}
# the bit fields of the u64 at offset 40, in order
_FLAGS = ["disabled", "inherit", "pinned", "exclusive", "exclude_user", "exclude_kernel", "exclude_hv",
          "exclude_idle", "mmap", "comm", "freq", "inherit_stat", "enable_on_exec", "task", "watermark",
          "precise_ip", None, "mmap_data", "sample_id_all", "exclude_host", "exclude_guest",
          "exclude_callchain_kernel", "exclude_callchain_user", "mmap2", "comm_exec", "use_clockid",
          "context_switch", "write_backward", "namespaces", "ksymbol", "bpf_event", "aux_output",
          "cgroup", "text_poke", "build_id", "inherit_thread", "remove_on_exec", "sigtrap"]
SIZE = 112          # PERF_ATTR_SIZE_VER5: every field above


def pack(fields: dict) -> bytes:
    """The attribute's bytes; unknown names are a ValueError naming the known ones."""
    buf = bytearray(SIZE)
    struct.pack_into("<I", buf, 4, SIZE)
    flags = 0
    for name, value in fields.items():
        if name in _FIELDS:
            offset, fmt = _FIELDS[name]
            struct.pack_into("<" + fmt, buf, offset, int(value))
        elif name in _FLAGS:
            bit = _FLAGS.index(name)
            width = 2 if name == "precise_ip" else 1
            if not 0 <= int(value) < (1 << width):
                raise ValueError(f"perf_event_attr.{name} is {width} bit(s) wide, not {value!r}")
            flags |= int(value) << bit
        else:
            raise ValueError(f"perf_event_attr has no field {name!r} (fields: "
                             f"{', '.join(sorted(_FIELDS))}; flags: {', '.join(f for f in _FLAGS if f)})")
    struct.pack_into("<Q", buf, 40, flags)
    return bytes(buf)
