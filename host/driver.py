"""The host's driver for the accelerator: its commands as methods (INFO, memory writes and reads in
frames that fit, MATMUL, counters) over a :class:`~neofpga.host.link.Link`.

    driver = AcceleratorDriver(Link(transport))
    check_info(driver.device_info, {"gateware_version": version, "numerics_version": NUMERICS_VERSION})
    driver.write(Space.WEIGHTS, 0, 0, matrix_bytes)

The device behind the link is the gateware (:class:`neofpga.hdl.accelerator.Accelerator`) on a
board or on the simulated board, or its Python reference model
(:class:`neofpga.host.accelerator_model.AcceleratorModel`).
"""

import numpy as np

from ..contract.errors import UserError
from ..contract.numerics import NUMERICS_VERSION
from ..contract.program import PROGRAM_VERSION
from ..contract.protocol import (ACCESS, CHOICE, INFO, INFO_MAGIC, MATMUL, READ, TOKEN, WORD_BYTES, Opcode,
                                 counters_record, info_record, pack_record, record_size, unpack_record)

__all__ = ["record_dtype", "AcceleratorDriver", "PlanningDriver", "check_info"]


def record_dtype(fields):
    """The numpy structured dtype of a protocol record (little-endian fields, no padding)."""
    return np.dtype([(name, f"<{'i' if signed else 'u'}{size}") for name, size, signed in fields])


class AcceleratorDriver:
    """The device behind ``link``; its INFO record is read once, into ``device_info``.

    Reading INFO first also makes it the link's first command, which a device never skips as a
    retry (see :class:`~neofpga.host.link.Link`).
    """

    def __init__(self, link):
        self.link = link
        self.device_info = self.info()

    def info(self):
        """The device's INFO record as a dict (``dram_words``, ``dram_controller`` and ``stream_words`` 0 on a device
        without DRAM); a one-line error for one of another size (other gateware)."""
        payload = self.link.command(Opcode.INFO)
        sizes = {record_size(info_record(dram)): dram for dram in (False, True)}
        if len(payload) not in sizes:
            raise UserError(f"the device's INFO is {len(payload)} bytes, this neofpga reads {record_size(INFO)} or "
                            f"{record_size(info_record(True))}: its gateware is another version (rebuild the "
                            f"bitstream with neofpga build and flash it)")
        return {"dram_words": 0, "dram_controller": 0, "stream_words": 0,
                **unpack_record(info_record(sizes[len(payload)]), payload)}

    def words_per_write(self, space):
        """The most words of ``space`` one WRITE frame carries."""
        return (self.device_info["max_payload"] - record_size(ACCESS)) // WORD_BYTES[space]

    def write(self, space, bank, address, data):
        """Write words (``data``: their little-endian bytes) from ``address`` on, in as many frames as needed."""
        size = WORD_BYTES[space]
        if len(data) % size:
            raise ValueError(f"{len(data)} bytes are not a whole number of {size}-byte words")
        per_frame = self.words_per_write(space)
        for start in range(0, len(data) // size, per_frame):
            head = pack_record(ACCESS, space=space, bank=bank, address=address + start)
            self.link.command(Opcode.WRITE, head + data[start * size:(start + per_frame) * size])

    def read(self, space, bank, address, words):
        """``words`` words from ``address`` on, as their bytes, in as many frames as needed."""
        per_frame = self.device_info["max_payload"] // WORD_BYTES[space]
        return b"".join(
            self.link.command(Opcode.READ, pack_record(READ, space=space, bank=bank, address=address + start,
                                                       words=min(per_frame, words - start)))
            for start in range(0, words, per_frame))

    def matmul(self, **fields):
        """One MATMUL (fields of :data:`~neofpga.contract.protocol.MATMUL`; those not given are 0)."""
        self.link.command(Opcode.MATMUL, pack_record(MATMUL, **fields))

    def token(self, **fields):
        """One TOKEN (fields of :data:`~neofpga.contract.protocol.TOKEN`): the device's CHOICE as a dict."""
        return unpack_record(CHOICE, self.link.command(Opcode.TOKEN, pack_record(TOKEN, **fields)))

    def counters(self):
        """The device's COUNTERS record as a dict."""
        info = self.device_info
        return unpack_record(counters_record(info["norm_length"], info["dram_words"]),
                             self.link.command(Opcode.COUNTERS))

    def reset_counters(self):
        """Zero the device's counters."""
        self.link.command(Opcode.RESET_COUNTERS)


class PlanningDriver:
    """A stand-in for a device of accelerator ``parameters`` (contract/design.py's), to plan a model's
    memories before a board is connected: it reports them as INFO would, and its writes go nowhere."""

    def __init__(self, parameters):
        self.device_info = {**parameters, "magic": INFO_MAGIC, "numerics_version": NUMERICS_VERSION,
                            "program_version": PROGRAM_VERSION if parameters.get("program_words") else 0,
                            "dram_words": parameters.get("dram_words", 0)}

    def write(self, space, bank, address, data):
        """Nothing: a plan uploads nothing."""

    def read(self, space, bank, address, words):
        """Zeros: a plan's device holds nothing."""
        return bytes(words * WORD_BYTES[space])


def check_info(info, expected):
    """Refuse a device whose INFO does not match: not neofpga, or another gateware or numerics version.

    ``expected`` holds the versions to check (``gateware_version``, ``numerics_version``, either or both).
    """
    if info["magic"] != INFO_MAGIC:
        raise UserError(f"the device is not a neofpga accelerator (INFO magic {info['magic']:#010x}): "
                        f"check the port and flash the neofpga bitstream")
    if "gateware_version" in expected and info["gateware_version"] != expected["gateware_version"]:
        raise UserError(f"the board runs gateware version {info['gateware_version']}, this neofpga needs "
                        f"version {expected['gateware_version']}: rebuild the bitstream and flash it")
    if "numerics_version" in expected and info["numerics_version"] != expected["numerics_version"]:
        raise UserError(f"the board's gateware computes numerics version {info['numerics_version']}, this "
                        f"neofpga computes version {expected['numerics_version']}: rebuild the bitstream "
                        f"from this neofpga and flash it")
