"""The register pipeline that the streaming units (requantizer, GELU) are built on."""

from amaranth.hdl import Cat, Signal, Value

__all__ = ["StallingPipeline"]


class StallingPipeline:
    """``latency`` register stages between stream ``i`` and stream ``o`` that move together.

    Every stage advances whenever the output register is empty or being taken (``i.ready`` is
    that condition), so no element is dropped or duplicated whatever ``i.valid`` and ``o.ready``
    do. :meth:`stage` makes one register of the pipeline; the caller drives ``o.payload`` from its
    last stage with ``with m.If(pipeline.advance)``.
    """

    def __init__(self, m, i, o, latency):
        self.m = m
        self.advance = Signal()
        valid = Signal(latency)  # valid[k]: stage k + 1 holds an element
        m.d.comb += [self.advance.eq(~o.valid | o.ready), i.ready.eq(self.advance), o.valid.eq(valid[-1])]
        with m.If(self.advance):
            m.d.sync += valid.eq(Cat(i.valid, valid[:-1]))

    def stage(self, name, value):
        """A register of the pipeline, loaded from ``value`` when the pipeline advances."""
        register = Signal(Value.cast(value).shape(), name=name)
        with self.m.If(self.advance):
            self.m.d.sync += register.eq(value)
        return register
