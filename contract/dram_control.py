"""LiteDRAM's control registers, as the host reaches them over the link to initialise a board's DRAM.

A board's DRAM controller (LiteDRAM's, boards/litedram_core.py) starts with the chip unpowered
and the user port held. Its control registers (CSRs) sit on a Wishbone bus that the bitstream
puts behind the link's :data:`~neofpga.contract.protocol.Space.CONTROL` space: one 32-bit word per
register, word ``n`` at the bus's byte address ``4 n``. The host then does what LiteX's BIOS does
with a CPU: it takes the DFII (the controller's software interface to the chip), plays the chip's
init sequence, (on DDR3) levels the reads, hands the chip back to the controller and sets
``init_done``, which opens the user port.

The registers and sequences are LiteDRAM's for each board's DRAM as contract/dram.py has it
(tests/test_litedram_core.py holds them to the generated core's csr.csv and to
``litedram.init``), so that the host needs no LiteDRAM at run time.

Plain Python, like contract/protocol.py.
"""

from dataclasses import dataclass

__all__ = ["CONTROL_WORDS", "DFII_CONTROL_SEL", "DFII_CONTROL_CKE", "DFII_CONTROL_ODT",
           "DFII_CONTROL_RESET_N", "DFII_COMMAND_CS", "DFII_COMMAND_WE", "DFII_COMMAND_CAS",
           "DFII_COMMAND_RAS", "DFII_COMMAND_WRDATA", "DFII_COMMAND_RDDATA", "InitStep",
           "DramControl", "BOARD_CONTROLS", "DRAM_CONTROLLERS", "controller_code"]

CONTROL_WORDS = 16384
"""The CONTROL space's words: LiteDRAM's CSR region, 64 KiB of 32-bit registers."""

# The DFII control register's bits: the DFII drives the chip (SEL clear) or the controller does.
DFII_CONTROL_SEL = 0x01
DFII_CONTROL_CKE = 0x02
DFII_CONTROL_ODT = 0x04
DFII_CONTROL_RESET_N = 0x08
# A DFII phase's command bits.
DFII_COMMAND_CS = 0x01
DFII_COMMAND_WE = 0x02
DFII_COMMAND_CAS = 0x04
DFII_COMMAND_RAS = 0x08
DFII_COMMAND_WRDATA = 0x10
DFII_COMMAND_RDDATA = 0x20

_MODE_REGISTER = DFII_COMMAND_RAS | DFII_COMMAND_CAS | DFII_COMMAND_WE | DFII_COMMAND_CS
_PRECHARGE_ALL = DFII_COMMAND_RAS | DFII_COMMAND_WE | DFII_COMMAND_CS
_AUTO_REFRESH = DFII_COMMAND_RAS | DFII_COMMAND_CAS | DFII_COMMAND_CS
_CKE_HIGH = DFII_CONTROL_CKE | DFII_CONTROL_ODT | DFII_CONTROL_RESET_N


@dataclass(frozen=True)
class InitStep:
    """One step of a chip's init sequence: a write of the DFII ``control`` register (``command``
    False) or a command issued on phase 0 with ``address`` and ``bank``; then a wait of at least
    ``delay`` controller cycles."""

    comment: str
    command: bool
    value: int
    address: int
    bank: int
    delay: int


@dataclass(frozen=True)
class DramControl:
    """A board's LiteDRAM control registers (CONTROL word addresses) and its chip's init sequence."""

    registers: dict      #: CSR name (csr.csv's) -> CONTROL word address
    phases: int          #: DFII phases (each has its own command, address, wrdata and rddata registers)
    phase_stride: int    #: words from one phase's registers to the next's
    data_words: int      #: CSR words of a phase's wrdata or rddata (most significant first)
    init: tuple          #: the :class:`InitStep` s
    read_leveling: bool = False  #: whether the reads are levelled (ECP5DDRPHY's delays and bitslips)
    modules: int = 1     #: byte lanes levelled one at a time (``ddrphy_dly_sel`` bit ``n``: lane ``n``)
    delays: int = 0      #: read delay taps a lane has
    bitslips: int = 0    #: read bitslips a lane has
    read_phase: int = 0  #: the DFII phase of a read command (LiteDRAM's rdphase)
    write_phase: int = 0  #: ... and of a write command (wrphase)

    def phase_register(self, phase, name):
        """The word address of phase ``phase``'s register ``name`` (command, command_issue, address,
        baddress, wrdata or rddata)."""
        return self.registers[f"sdram_dfii_pi0_{name}"] + phase * self.phase_stride


def _registers(base, names):
    return {name: base + offset for offset, name in enumerate(names)}


_PHASE = ("command", "command_issue", "address", "baddress")
_CONTROL = ("ddrctrl_init_done", "ddrctrl_init_error")


def _dfii(base, phases, data_words):
    names = ["sdram_dfii_control"]
    for phase in range(phases):
        names += [f"sdram_dfii_pi{phase}_{name}" for name in _PHASE]
        names += [f"sdram_dfii_pi{phase}_wrdata"] + [None] * (data_words - 1)
        names += [f"sdram_dfii_pi{phase}_rddata"] + [None] * (data_words - 1)
    return {name: address for name, address in _registers(base, names).items() if name}


BOARD_CONTROLS = {
    # MT48LC16M16 at 50 MHz: CL 2, BL 1.
    "ulx3s": DramControl(
        registers={**_registers(0, _CONTROL), **_dfii(0x200, phases=1, data_words=1)},
        phases=1, phase_stride=7, data_words=1,
        init=(InitStep("Bring CKE high", False, _CKE_HIGH, 0, 0, 20000),
              InitStep("Precharge All", True, _PRECHARGE_ALL, 1024, 0, 0),
              InitStep("Load Mode Register / Reset DLL, CL=2, BL=1", True, _MODE_REGISTER, 288, 0, 200),
              InitStep("Precharge All", True, _PRECHARGE_ALL, 1024, 0, 0),
              InitStep("Auto Refresh", True, _AUTO_REFRESH, 0, 0, 4),
              InitStep("Auto Refresh", True, _AUTO_REFRESH, 0, 0, 4),
              InitStep("Load Mode Register / CL=2, BL=1", True, _MODE_REGISTER, 32, 0, 200))),
    # MT41K256M16 at 150 MHz (controller 75 MHz, half rate): CWL 5, CL 6, BL 8, RTT_NOM 60 ohms.
    "ecpix5": DramControl(
        registers={**_registers(0, _CONTROL),
                   **_registers(0x200, ("ddrphy_dly_sel", "ddrphy_rdly_dq_rst", "ddrphy_rdly_dq_inc",
                                        "ddrphy_rdly_dq_bitslip_rst", "ddrphy_rdly_dq_bitslip",
                                        "ddrphy_burstdet_clr", "ddrphy_burstdet_seen")),
                   **_dfii(0x400, phases=2, data_words=2)},
        phases=2, phase_stride=8, data_words=2,
        init=(InitStep("Release reset", False, DFII_CONTROL_ODT | DFII_CONTROL_RESET_N, 0, 0, 50000),
              InitStep("Bring CKE high", False, _CKE_HIGH, 0, 0, 10000),
              InitStep("Load Mode Register 2, CWL=5", True, _MODE_REGISTER, 512, 2, 0),
              InitStep("Load Mode Register 3", True, _MODE_REGISTER, 0, 3, 0),
              InitStep("Load Mode Register 1", True, _MODE_REGISTER, 6, 1, 0),
              InitStep("Load Mode Register 0, CL=6, BL=8", True, _MODE_REGISTER, 800, 0, 200),
              InitStep("ZQ Calibration", True, DFII_COMMAND_WE | DFII_COMMAND_CS, 1024, 0, 200)),
        read_leveling=True, modules=2, delays=8, bitslips=4, read_phase=0, write_phase=1),
}
"""The control registers and init sequence of each family of boards' DRAM (contract/dram.py's)."""

DRAM_CONTROLLERS = (None, "ulx3s", "ecpix5")
"""INFO's ``dram_controller`` codes: 0 none, else the family of :data:`BOARD_CONTROLS` whose LiteDRAM it is."""


def controller_code(family):
    """INFO's ``dram_controller`` for a board of ``family`` (contract/dram.py's BOARD_DRAMS)."""
    return DRAM_CONTROLLERS.index(family)
