"""A transport that damages what passes through it: the link's retries under test."""

import collections

__all__ = ["FaultyTransport"]


class FaultyTransport:
    """A transport that damages what passes through it, both ways: the retries' test bench.

    Each frame written and each chunk read is, with its own probability, hit by a bit flip
    (``flip``), cut short (``truncate``), sent twice (``duplicate``), preceded by up to 16 random
    bytes (``garbage``) or lost (``drop``). ``rng`` is a numpy Generator; ``faults`` counts the
    faults made, by kind.
    """

    def __init__(self, transport, rng, flip=0.0, truncate=0.0, duplicate=0.0, garbage=0.0, drop=0.0):
        self.transport, self.rng = transport, rng
        self.chances = dict(flip=flip, truncate=truncate, duplicate=duplicate, garbage=garbage, drop=drop)
        self.faults = collections.Counter()
        self.pending = bytearray()

    def damage(self, data):
        """``data`` after this transport's faults."""
        data = bytearray(data)
        if self._strikes("flip"):
            data[self.rng.integers(len(data))] ^= 1 << int(self.rng.integers(8))
        if len(data) > 1 and self._strikes("truncate"):
            del data[self.rng.integers(1, len(data)):]
        if self._strikes("duplicate"):
            data = data * 2
        if self._strikes("garbage"):
            data[:0] = self.rng.bytes(int(self.rng.integers(1, 17)))
        if self._strikes("drop"):
            data.clear()
        return bytes(data)

    def _strikes(self, kind):
        """Whether fault ``kind`` happens this time (counted if it does)."""
        strikes = self.rng.random() < self.chances[kind]
        self.faults[kind] += strikes
        return strikes

    def write(self, data):
        """Write ``data``, damaged."""
        self.transport.write(self.damage(data))
        return len(data)

    def read(self, size=1):
        """Up to ``size`` bytes of what the inner transport gave, damaged chunk by chunk."""
        if not self.pending:
            data = self.transport.read(size)
            if data:
                self.pending += self.damage(data)
        data = bytes(self.pending[:size])
        del self.pending[:size]
        return data

    def reset_input_buffer(self):
        """Drop what is waiting to be read, here and in the inner transport."""
        self.pending.clear()
        self.transport.reset_input_buffer()

    def close(self):
        """Close the inner transport."""
        self.transport.close()
