"""common.follow(): Ctrl-C while a batch of records prints loses none of the batch (a slow tool
under load reads several records in one batch; the interrupt used to drop the rest)."""
import os
import signal

from pyprobe.tools import common


class Stream:
    lost = 0

    def __init__(self):
        self.later = [7]

    def batches(self, timeout=None, duration=None):
        yield [1, 2, 3]
        yield [4, 5]                   # never read: Ctrl-C came during the first batch

    def drain(self):
        out, self.later = self.later, []
        return out


def test_ctrl_c_during_a_batch_keeps_the_rest_of_it():
    seen = []

    def on_record(r):
        seen.append(r)
        if r == 1:
            os.kill(os.getpid(), signal.SIGINT)       # Ctrl-C as the first record prints

    old = signal.getsignal(signal.SIGINT)
    try:
        common.follow(Stream(), on_record)
    finally:
        signal.signal(signal.SIGINT, old)
    assert seen == [1, 2, 3, 7]        # the whole batch, then what the buffer still held


class ConsumingStream(Stream):
    """A buffer whose read takes records off the ring before it returns them, as RingBuf's drain()."""

    def __init__(self):
        self.later = []
        self.calls = 0

    def batches(self, timeout=None, duration=None):
        self.calls += 1
        if self.calls == 1:
            taken = [1, 2]                             # consumed from the ring...
            os.kill(os.getpid(), signal.SIGINT)        # ...when Ctrl-C comes, before they are returned
            yield taken
        # later calls: nothing more comes (timeout passes with no record)


def test_ctrl_c_inside_the_buffers_read_loses_nothing_and_ends_the_loop():
    seen = []
    old = signal.getsignal(signal.SIGINT)
    try:
        common.follow(ConsumingStream(), seen.append)
    finally:
        signal.signal(signal.SIGINT, old)
    assert seen == [1, 2]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler     # Ctrl-C raises again after


class QuietStream(Stream):
    """No record ever: batches() returns after its timeout, as RingBuf's does."""

    def __init__(self):
        self.later = []
        self.calls = 0

    def batches(self, timeout=None, duration=None):
        self.calls += 1
        if self.calls == 3:
            os.kill(os.getpid(), signal.SIGINT)        # Ctrl-C while nothing comes
        return iter(())


def test_ctrl_c_while_no_record_comes_ends_the_loop():
    stream = QuietStream()
    old = signal.getsignal(signal.SIGINT)
    try:
        common.follow(stream, lambda r: None)
    finally:
        signal.signal(signal.SIGINT, old)
    assert stream.calls == 3
