"""A board's status LEDs: a moment made visible."""

from amaranth.hdl import Signal

__all__ = ["stretched"]


def stretched(m, pulse, cycles):
    """``pulse`` held high for ``cycles`` after each occurrence (in ``m``'s sync domain), for an LED
    that shows a byte or a beat go by."""
    count = Signal(range(cycles + 1))
    with m.If(pulse):
        m.d.sync += count.eq(cycles)
    with m.Elif(count != 0):
        m.d.sync += count.eq(count - 1)
    return count != 0
