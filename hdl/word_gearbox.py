"""Beats to words: a WRITE's payload, read from the frame buffer a beat a cycle, cut into the words
of its space, a word a cycle where the word is no narrower than the beat."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WordGearbox"]


class WordGearbox(wiring.Component):
    """Bytes taken a beat at a time and given a word at a time, in order, the first beat after
    ``start`` from its lane ``skip`` on.

    It holds up to ``max_word_bytes + beat_bytes`` bytes: a beat is taken whenever at most
    ``max_word_bytes`` stay once this cycle's word has gone (so it takes one every cycle while it
    gives a word of ``beat_bytes`` or more every cycle it can), and a word is offered whenever
    ``word_bytes`` are held.

    Parameters
    ----------
    beat_bytes, max_word_bytes : int

    Attributes
    ----------
    i : stream.Signature(8 * beat_bytes), in
        The beats, LSB first.
    o : stream.Signature(8 * max_word_bytes), out
        The words, LSB first: the low ``word_bytes`` bytes (the rest are the bytes after it, or 0).
    word_bytes : Signal(range(max_word_bytes + 1)), in
        Bytes a word; held while words are given.
    start : Signal(1), in
        Drop every byte held; the next beat is a first one.
    skip : Signal(range(beat_bytes)), in
        Lanes of a first beat that are dropped.
    """

    def __init__(self, beat_bytes, max_word_bytes):
        self.beat_bytes, self.max_word_bytes = beat_bytes, max_word_bytes
        super().__init__({
            "i": In(stream.Signature(8 * beat_bytes)),
            "o": Out(stream.Signature(8 * max_word_bytes)),
            "word_bytes": In(range(max_word_bytes + 1)),
            "start": In(1),
            "skip": In(range(beat_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        n, capacity = self.beat_bytes, self.max_word_bytes + self.beat_bytes
        held = Signal(8 * capacity)  # the bytes, LSB first; those past ``count`` are 0
        count = Signal(range(capacity + 1))
        first = Signal(init=1)

        given, taken = self.o.valid & self.o.ready, self.i.valid & self.i.ready
        left = Signal.like(held)     # what stays of the bytes held once this cycle's word (if any) has gone
        left_count = Signal.like(count)
        m.d.comb += [self.o.valid.eq(count >= self.word_bytes), self.o.payload.eq(held),
                     left.eq(Mux(given, held >> (self.word_bytes * 8), held)),
                     left_count.eq(count - Mux(given, self.word_bytes, 0)),
                     self.i.ready.eq(left_count <= self.max_word_bytes)]
        skip = Mux(first, self.skip, 0)
        beat = Signal(8 * n)         # the beat's bytes kept, from lane 0
        m.d.comb += beat.eq(self.i.payload >> (skip * 8))
        with m.If(self.start):
            m.d.sync += [held.eq(0), count.eq(0), first.eq(1)]
        with m.Elif(taken):
            m.d.sync += [held.eq(left | (beat << (left_count * 8))), count.eq(left_count + n - skip), first.eq(0)]
        with m.Elif(given):
            m.d.sync += [held.eq(left), count.eq(left_count)]
        return m
