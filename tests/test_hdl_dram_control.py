"""The CONTROL space of a design with a DRAM controller (as a board's DRAM bitstream has), on the
simulated board, whose stand-in registers read back what was written (sim/control_registers.py):
INFO's controller, WRITE and READ of its words, the refusals, DRAM alongside, and the host's
initialisation of the DRAM over the link (host/dram_init.py)."""

import numpy as np
import pytest
import serial

from neofpga.contract.dram import BOARD_DRAMS
from neofpga.contract.dram_control import BOARD_CONTROLS, CONTROL_WORDS, DFII_CONTROL_SEL, controller_code
from neofpga.contract.protocol import ACCESS, ERROR, READ, Error, Opcode, Space, encode_frame, pack_record
from neofpga.host.dram_init import initialise_dram
from neofpga.host.driver import AcceleratorDriver
from neofpga.host.link import Link
from neofpga.sim.board_process import SimulatedBoard, dram_option
from neofpga.sim.simulated_board import board_executable

from test_hdl_accelerator import RawLink
from test_hdl_dram import DESIGN, DRAM_WORDS

CONTROLLED = {**DESIGN, "dram_controller": controller_code("ulx3s")}


@pytest.fixture(scope="module")
def board():
    executable = board_executable(CONTROLLED, log=lambda line: None)
    with SimulatedBoard(executable, dram=dram_option(BOARD_DRAMS["ulx3s"], DRAM_WORDS, DESIGN["clock_hz"])) as board:
        yield board


@pytest.fixture
def driver(board):
    driver = AcceleratorDriver(Link(serial.serial_for_url(board.url, timeout=0.01), timeout=10))
    yield driver
    driver.link.close()


def test_control_words_read_back_what_was_written(driver):
    assert driver.device_info["dram_controller"] == controller_code("ulx3s")
    rng = np.random.default_rng(3)
    addresses = [0, 1, CONTROL_WORDS - 1] + [int(a) for a in rng.integers(0, CONTROL_WORDS - 8, 20)]
    written = {}
    for address in addresses:
        values = rng.integers(0, 2 ** 32, int(rng.integers(1, 8)), dtype=np.uint64).astype("<u4")
        count = min(len(values), CONTROL_WORDS - address)
        driver.write(Space.CONTROL, 0, address, values[:count].tobytes())
        written.update({address + i: int(values[i]) for i in range(count)})
    for address, value in written.items():
        assert int.from_bytes(driver.read(Space.CONTROL, 0, address, 1), "little") == value
    first = sorted(written)[:4]
    if first == list(range(first[0], first[0] + 4)):  # several words in one READ
        assert driver.read(Space.CONTROL, 0, first[0], 4) == b"".join(written[a].to_bytes(4, "little")
                                                                      for a in first)


def test_dram_works_alongside_control(driver):
    rng = np.random.default_rng(4)
    data = rng.integers(0, 256, 16 * 20, dtype=np.uint8).tobytes()
    driver.write(Space.DRAM, 0, 100, data)
    driver.write(Space.CONTROL, 0, 5, (0x12345678).to_bytes(4, "little"))
    assert driver.read(Space.DRAM, 0, 100, 20) == data
    assert driver.read(Space.CONTROL, 0, 5, 1) == (0x12345678).to_bytes(4, "little")


@pytest.mark.parametrize("record, payload", [
    (pack_record(READ, space=Space.CONTROL, bank=0, address=CONTROL_WORDS - 1, words=2), b""),  # past the end
    (pack_record(READ, space=Space.CONTROL, bank=1, address=0, words=1), b""),                  # no bank 1
    (pack_record(ACCESS, space=Space.CONTROL, bank=0, address=0), bytes(6)),                     # not whole words
    (pack_record(ACCESS, space=Space.CONTROL + 1, bank=0, address=0), bytes(4)),                 # no such space
])
def test_control_accesses_out_of_range_are_refused(board, record, payload):
    link = RawLink(board.url)
    opcode = Opcode.READ if not payload else Opcode.WRITE
    answer = link.exchange(encode_frame(opcode, 1, record + payload))
    link.port.close()
    assert (answer.opcode, answer.payload) == (ERROR, bytes([Error.BAD_ARGUMENT]))


def test_the_host_initialises_the_dram_over_the_link_once(driver):
    control = BOARD_CONTROLS["ulx3s"]
    driver.write(Space.CONTROL, 0, control.registers["ddrctrl_init_done"], bytes(4))
    done, levels = initialise_dram(driver, log=lambda line: None, sleep=lambda seconds: None)
    assert (done, levels) == ("initialised", None)

    def register(name):
        return int.from_bytes(driver.read(Space.CONTROL, 0, control.registers[name], 1), "little")

    last = control.init[-1]
    assert register("sdram_dfii_control") == DFII_CONTROL_SEL  # handed to the controller
    assert register("ddrctrl_init_done") == 1 and register("ddrctrl_init_error") == 0
    assert (register("sdram_dfii_pi0_command"), register("sdram_dfii_pi0_address")) == (last.value, last.address)
    assert initialise_dram(driver, log=lambda line: None)[0] == "already"
