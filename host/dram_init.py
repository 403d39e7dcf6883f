"""Initialising a board's DRAM over the link, as LiteX's BIOS does it with a CPU.

A board's LiteDRAM controller starts with its user port held (contract/dram_control.py). The host
reaches the controller's registers through the CONTROL space and:

1. takes the chip through the DFII (software control, CKE high),
2. plays the chip's init sequence (mode registers, refreshes, ZQ calibration), waiting each
   step's delay (the link's own latency usually exceeds it),
3. on DDR3, levels the reads: for each byte lane, every bitslip and read delay is tried by writing
   a pattern through the DFII and reading it back; the lane keeps the bitslip with the widest
   window of delays that read it right, and the delay in that window's middle,
4. hands the chip back to the controller (SEL) and sets ``init_done``, which opens the port.

A DRAM already initialised (``init_done`` reads 1) is left alone: initialising it again would stop
its refresh for the length of the exchange, and its contents (the weights) could be lost.
"""

import random
import time

from ..contract.dram import BOARD_DRAMS
from ..contract.dram_control import (BOARD_CONTROLS, DFII_COMMAND_CAS, DFII_COMMAND_CS, DFII_COMMAND_RAS,
                                     DFII_COMMAND_RDDATA, DFII_COMMAND_WE, DFII_COMMAND_WRDATA, DFII_CONTROL_CKE,
                                     DFII_CONTROL_ODT, DFII_CONTROL_RESET_N, DFII_CONTROL_SEL, DRAM_CONTROLLERS)
from ..contract.errors import UserError
from ..contract.protocol import Space

__all__ = ["ControlBus", "initialise_dram", "level_reads"]

LEVELING_PATTERNS = 2
"""Random patterns written and read back at each bitslip and delay while levelling."""


class ControlBus:
    """The DRAM controller's registers through ``driver``'s CONTROL space (32-bit words)."""

    def __init__(self, driver):
        self.driver = driver

    def write(self, address, value):
        """Write register word ``address``."""
        self.driver.write(Space.CONTROL, 0, address, int(value).to_bytes(4, "little"))

    def read(self, address):
        """Read register word ``address``."""
        return int.from_bytes(self.driver.read(Space.CONTROL, 0, address, 1), "little")


def initialise_dram(driver, log=print, sleep=time.sleep, rng=None, control=None):
    """Initialise the DRAM of the device behind ``driver`` if its INFO names a controller that needs
    it and it is not yet done; returns what was done ("none", "already" or "initialised"), and
    with read levelling, each lane's (bitslip, delay). ``control``: the registers and sequence to
    use instead of the contract's for that controller (a simulation's, whose PHY differs)."""
    code = driver.device_info.get("dram_controller", 0)
    if not code:
        return "none", None
    if code >= len(DRAM_CONTROLLERS):
        raise UserError(f"the device's DRAM controller is number {code}, this neofpga knows 1 to "
                        f"{len(DRAM_CONTROLLERS) - 1}: rebuild the bitstream with neofpga build and flash it")
    family = DRAM_CONTROLLERS[code]
    control, dram = control or BOARD_CONTROLS[family], BOARD_DRAMS[family]
    bus = ControlBus(driver)
    if bus.read(control.registers["ddrctrl_init_done"]) & 1:
        return "already", None
    log(f"DRAM: initialising the {dram.module} through LiteDRAM's DFII ...")
    dfii = control.registers["sdram_dfii_control"]
    bus.write(dfii, DFII_CONTROL_CKE | DFII_CONTROL_ODT | DFII_CONTROL_RESET_N)
    for step in control.init:
        if step.command:
            _command(bus, control, 0, step.value, step.address, step.bank)
        else:
            bus.write(dfii, step.value)
        if step.delay:
            sleep(step.delay / dram.sys_hz)
    levels = None
    if control.read_leveling:
        levels = level_reads(bus, control, rng or random.Random(0), log)
    bus.write(dfii, DFII_CONTROL_SEL)
    bus.write(control.registers["ddrctrl_init_error"], 0)
    bus.write(control.registers["ddrctrl_init_done"], 1)
    log("DRAM: ready" + (" (reads levelled: " + ", ".join(f"lane {lane} bitslip {slip} delay {delay}"
                                                         for lane, (slip, delay) in enumerate(levels)) + ")"
                         if levels else ""))
    return "initialised", levels


def _command(bus, control, phase, command, address=0, bank=0):
    """Issue ``command`` on DFII phase ``phase`` with ``address`` and ``bank``."""
    bus.write(control.phase_register(phase, "address"), address)
    bus.write(control.phase_register(phase, "baddress"), bank)
    bus.write(control.phase_register(phase, "command"), command)
    bus.write(control.phase_register(phase, "command_issue"), 1)


def _phase_data(bus, control, phase, name, value=None):
    """Write (``value``) or read a phase's wrdata or rddata, as one integer (its CSR words most
    significant first)."""
    first = control.phase_register(phase, name)
    if value is not None:
        for index in range(control.data_words):
            shift = 32 * (control.data_words - 1 - index)
            bus.write(first + index, value >> shift & 0xFFFFFFFF)
        return None
    words = [bus.read(first + index) for index in range(control.data_words)]
    return sum(word << 32 * (control.data_words - 1 - index) for index, word in enumerate(words))


def _lane_bytes(control, value, lane):
    """The bytes of a phase's data that byte lane ``lane`` carries (byte ``k`` is lane ``k % modules``)."""
    data_bytes = 4 * control.data_words
    return bytes((value >> 8 * k) & 0xFF for k in range(data_bytes) if k % control.modules == lane)


def _lane_reads_back(bus, control, lane, rng):
    """Whether ``lane`` reads back what a DFII write put there, for LEVELING_PATTERNS random patterns."""
    bits = 32 * control.data_words
    write_phase, read_phase = control.write_phase, control.read_phase
    ok = True
    _command(bus, control, 0, DFII_COMMAND_RAS | DFII_COMMAND_CS)  # activate row 0 of bank 0
    for _ in range(LEVELING_PATTERNS):
        patterns = [rng.getrandbits(bits) for _ in range(control.phases)]
        for phase, pattern in enumerate(patterns):
            _phase_data(bus, control, phase, "wrdata", pattern)
        _command(bus, control, write_phase, DFII_COMMAND_CAS | DFII_COMMAND_WE | DFII_COMMAND_CS | DFII_COMMAND_WRDATA)
        _command(bus, control, read_phase, DFII_COMMAND_CAS | DFII_COMMAND_CS | DFII_COMMAND_RDDATA)
        for phase, pattern in enumerate(patterns):
            read = _phase_data(bus, control, phase, "rddata")
            ok &= _lane_bytes(control, read, lane) == _lane_bytes(control, pattern, lane)
    _command(bus, control, 0, DFII_COMMAND_RAS | DFII_COMMAND_WE | DFII_COMMAND_CS, address=1024)  # precharge all
    return ok


def _set_delay(bus, control, delay):
    bus.write(control.registers["ddrphy_rdly_dq_rst"], 1)
    for _ in range(delay):
        bus.write(control.registers["ddrphy_rdly_dq_inc"], 1)


def _set_bitslip(bus, control, bitslip):
    bus.write(control.registers["ddrphy_rdly_dq_bitslip_rst"], 1)
    for _ in range(bitslip):
        bus.write(control.registers["ddrphy_rdly_dq_bitslip"], 1)


def _widest_window(working):
    """(start, length) of the longest run of True in ``working``; length 0 if none."""
    best, start = (0, 0), None
    for index, ok in enumerate(list(working) + [False]):
        if ok and start is None:
            start = index
        elif not ok and start is not None:
            best = max(best, (index - start, -start))
            start = None
    return -best[1], best[0]


def level_reads(bus, control, rng, log=print):
    """Level each byte lane's reads (ECP5DDRPHY's bitslips and delays); returns each lane's
    (bitslip, delay). A :class:`UserError` if a lane reads right at no bitslip and delay."""
    levels = []
    for lane in range(control.modules):
        bus.write(control.registers["ddrphy_dly_sel"], 1 << lane)
        windows = []
        for bitslip in range(control.bitslips):
            _set_bitslip(bus, control, bitslip)
            working = []
            for delay in range(control.delays):
                _set_delay(bus, control, delay)
                working.append(_lane_reads_back(bus, control, lane, rng))
            start, length = _widest_window(working)
            windows.append((length, -bitslip, start))
            log(f"DRAM: lane {lane} bitslip {bitslip}: " + "".join("1" if ok else "0" for ok in working))
        length, bitslip, start = max(windows)
        if length == 0:
            raise UserError(f"DRAM read levelling failed: byte lane {lane} reads back no pattern at any bitslip "
                            f"and delay (check the board's DRAM and the bitstream)")
        bitslip, delay = -bitslip, start + (length - 1) // 2
        _set_bitslip(bus, control, bitslip)
        _set_delay(bus, control, delay)
        levels.append((bitslip, delay))
    bus.write(control.registers["ddrphy_dly_sel"], 0)
    return levels
