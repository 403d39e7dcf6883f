"""host/dram_init.py against a model of LiteDRAM's control registers: the init sequence played
through the DFII, the DDR3's read levelling finding each byte lane's bitslip and the middle of its
window of delays, a DRAM in use left alone, and a lane that reads nothing refused. (LiteDRAM's own
controller runs the SDR init in tests/test_litedram_crossing.py; its simulation model has no read
delays to level.)"""

import random

import pytest

from neofpga.contract.dram_control import (BOARD_CONTROLS, DFII_COMMAND_RDDATA, DFII_COMMAND_WRDATA, DFII_CONTROL_SEL,
                                           controller_code)
from neofpga.contract.errors import UserError
from neofpga.contract.protocol import Space
from neofpga.host.dram_init import initialise_dram


class ModelController:
    """A driver whose CONTROL space is a model of a board's LiteDRAM registers: commands issued are
    recorded; a DFII write keeps the phases' wrdata, and a read returns it, but each byte lane only
    where its bitslip is ``good[lane][0]`` and its delay within ``good[lane][1]`` (else garbage)."""

    def __init__(self, family, good=()):
        self.control = BOARD_CONTROLS[family]
        self.device_info = {"dram_controller": controller_code(family)}
        self.registers, self.good = {}, list(good)
        self.commands = []  # (phase, command, address, bank) issued
        self.delay = [0] * self.control.modules
        self.bitslip = [0] * self.control.modules
        self.stored = None
        self.rng = random.Random(1)

    def write(self, space, bank, address, data):
        assert (space, bank) == (Space.CONTROL, 0)
        for index in range(0, len(data), 4):
            self._write(address + index // 4, int.from_bytes(data[index:index + 4], "little"))

    def read(self, space, bank, address, words):
        assert (space, bank) == (Space.CONTROL, 0)
        return b"".join(self.registers.get(address + i, 0).to_bytes(4, "little") for i in range(words))

    def _write(self, address, value):
        c, r = self.control, self.control.registers
        self.registers[address] = value
        selected = [lane for lane in range(c.modules) if self.registers.get(r.get("ddrphy_dly_sel"), 0) >> lane & 1]
        for name, change in (("ddrphy_rdly_dq_rst", lambda lane: self.delay.__setitem__(lane, 0)),
                             ("ddrphy_rdly_dq_inc", lambda lane: self.delay.__setitem__(lane, self.delay[lane] + 1)),
                             ("ddrphy_rdly_dq_bitslip_rst", lambda lane: self.bitslip.__setitem__(lane, 0)),
                             ("ddrphy_rdly_dq_bitslip",
                              lambda lane: self.bitslip.__setitem__(lane, (self.bitslip[lane] + 1) % c.bitslips))):
            if address == r.get(name):
                for lane in selected:
                    change(lane)
        for phase in range(c.phases):
            if address == c.phase_register(phase, "command_issue"):
                self._issue(phase)

    def _issue(self, phase):
        c = self.control
        command = self.registers.get(c.phase_register(phase, "command"), 0)
        self.commands.append((phase, command, self.registers.get(c.phase_register(phase, "address"), 0),
                              self.registers.get(c.phase_register(phase, "baddress"), 0)))
        if command & DFII_COMMAND_WRDATA:
            self.stored = [self._phase_value(p, "wrdata") for p in range(c.phases)]
        if command & DFII_COMMAND_RDDATA:
            for p in range(c.phases):
                value = 0
                for k in range(4 * c.data_words):
                    lane = k % c.modules
                    slip, (low, high) = self.good[lane]
                    right = self.bitslip[lane] == slip and low <= self.delay[lane] <= high
                    byte = (self.stored[p] >> 8 * k & 0xFF) if right else self.rng.randrange(256)
                    value |= byte << 8 * k
                first = c.phase_register(p, "rddata")
                for index in range(c.data_words):
                    self.registers[first + index] = value >> 32 * (c.data_words - 1 - index) & 0xFFFFFFFF

    def _phase_value(self, phase, name):
        first = self.control.phase_register(phase, name)
        return sum(self.registers.get(first + i, 0) << 32 * (self.control.data_words - 1 - i)
                   for i in range(self.control.data_words))

    def register(self, name):
        return self.registers.get(self.control.registers[name], 0)


def quiet(line):
    pass


def test_the_sdr_init_plays_the_contracts_sequence_and_hands_the_chip_to_the_controller():
    device = ModelController("ulx3s")
    waits = []
    assert initialise_dram(device, log=quiet, sleep=waits.append) == ("initialised", None)
    control = BOARD_CONTROLS["ulx3s"]
    assert device.commands == [(0, step.value, step.address, step.bank) for step in control.init if step.command]
    assert waits == [step.delay / 50e6 for step in control.init if step.delay]
    assert device.register("sdram_dfii_control") == DFII_CONTROL_SEL
    assert (device.register("ddrctrl_init_done"), device.register("ddrctrl_init_error")) == (1, 0)


def test_a_dram_already_initialised_is_left_alone():
    device = ModelController("ulx3s")
    device.write(Space.CONTROL, 0, device.control.registers["ddrctrl_init_done"], (1).to_bytes(4, "little"))
    assert initialise_dram(device, log=quiet, sleep=quiet) == ("already", None)
    assert device.commands == []


@pytest.mark.parametrize("good, expected", [
    ([(2, (3, 6)), (1, (0, 2))], [(2, 4), (1, 1)]),    # each lane's window, its middle (rounded down)
    ([(0, (7, 7)), (3, (0, 7))], [(0, 7), (3, 3)]),    # a window of one delay; one of all eight
])
def test_ddr3_read_levelling_finds_each_lanes_bitslip_and_the_middle_of_its_window(good, expected):
    device = ModelController("ecpix5", good)
    done, levels = initialise_dram(device, log=quiet, sleep=quiet)
    assert (done, levels) == ("initialised", expected)
    assert [device.bitslip, device.delay] == [[slip for slip, _ in expected], [delay for _, delay in expected]]
    assert device.register("sdram_dfii_control") == DFII_CONTROL_SEL and device.register("ddrctrl_init_done") == 1
    assert device.register("ddrphy_dly_sel") == 0


def test_a_lane_that_reads_nothing_back_is_a_one_line_error_and_the_dram_stays_closed():
    device = ModelController("ecpix5", [(1, (2, 4)), (0, (9, 9))])  # lane 1's window lies past the 8 delays
    with pytest.raises(UserError, match="byte lane 1 reads back no pattern"):
        initialise_dram(device, log=quiet, sleep=quiet)
    assert device.register("ddrctrl_init_done") == 0


def test_a_controller_this_neofpga_does_not_know_is_refused():
    device = ModelController("ulx3s")
    device.device_info["dram_controller"] = 9
    with pytest.raises(UserError, match="number 9"):
        initialise_dram(device, log=quiet, sleep=quiet)


def test_a_device_without_a_controller_needs_nothing():
    device = ModelController("ulx3s")
    device.device_info["dram_controller"] = 0
    assert initialise_dram(device, log=quiet, sleep=quiet) == ("none", None)
