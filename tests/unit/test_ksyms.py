"""Kernel function names: compiler variants and near misses (on a fixed symbol set)."""
from pyprobe.backend import ksyms

SYMBOLS = frozenset({"vfs_read", "vfs_readv", "vfs_write", "finish_task_switch.isra.0",
                     "blk_mq_start_request", "tcp_sendmsg.cold", "tcp_sendmsg_locked", "do_sys_open.part.0"})


def test_exact_names_resolve_to_themselves():
    assert ksyms.resolve("vfs_read", SYMBOLS) == "vfs_read"


def test_compiler_variants_are_found():
    assert ksyms.resolve("finish_task_switch", SYMBOLS) == "finish_task_switch.isra.0"
    assert ksyms.resolve("do_sys_open", SYMBOLS) == "do_sys_open.part.0"


def test_cold_parts_are_not_function_entries():
    assert ksyms.resolve("tcp_sendmsg", SYMBOLS) is None
    assert ksyms.variants("tcp_sendmsg", SYMBOLS) == ["tcp_sendmsg.cold"]


def test_missing_functions_get_suggestions():
    assert ksyms.resolve("blk_account_io_done", SYMBOLS) is None
    assert ksyms.did_you_mean("vfs_reed", SYMBOLS)[0] == "vfs_read"


def test_this_kernels_symbols_have_the_known_renames():
    real = ksyms.text_symbols()
    assert "vfs_read" in real
    # finish_task_switch is .isra.0 on this 6.18 kernel (and on Debian's 6.1/6.12)
    assert ksyms.resolve("finish_task_switch") in ("finish_task_switch", "finish_task_switch.isra.0")
