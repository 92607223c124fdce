"""The translator and the simulation refuse a program alike: the same message, the same line."""
import pytest

from pyprobe import TranslationError


def refused_alike(program, message: str) -> int:
    """The line (relative to the handler's `def`) both name; `message` is a regular expression."""
    with pytest.raises(TranslationError, match=message) as translated:
        program.translate()
    with pytest.raises(TranslationError, match=message) as simulated:
        program.simulate()
    assert translated.value.lineno == simulated.value.lineno
    return translated.value.lineno - program.on_enter.func.__code__.co_firstlineno
