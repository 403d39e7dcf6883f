"""host/backends.py: a --device string is parsed once into a Backend, or refused in one line."""

import pytest

from neofpga.contract.design import DEFAULT_BAUD
from neofpga.contract.errors import UserError
from neofpga.host.backends import BACKENDS, Backend, parse_backend, parse_backends


@pytest.mark.parametrize("text, kind, board", [("cpu", "cpu", False), ("hf", "hf", False), ("emu", "emu", False),
                                               ("sim", "sim", True)])
def test_plain_back_ends(text, kind, board):
    backend = parse_backend(text)
    assert (backend.kind, backend.is_board, str(backend)) == (kind, board, text)


def test_board_back_ends_carry_where_and_how_fast():
    server = parse_backend("sim:127.0.0.1:9000")
    assert (server.kind, server.host, server.port, server.simulated) == ("sim-server", "127.0.0.1", 9000, True)
    serial = parse_backend("serial:/dev/ttyUSB0@115200")
    assert (serial.kind, serial.port, serial.baud, serial.simulated) == ("serial", "/dev/ttyUSB0", 115200, False)
    assert parse_backend("serial:COM3").baud == DEFAULT_BAUD
    assert parse_backend(serial) is serial


@pytest.mark.parametrize("text, message", [("gpu", "unknown device 'gpu'"), ("sim:host", "bad board device"),
                                           ("sim:host:port", "bad board device"), ("serial:", "bad board device"),
                                           ("serial:/dev/x@fast", "bad board device")])
def test_bad_back_ends_are_one_line_errors(text, message):
    with pytest.raises(UserError, match=message) as error:
        parse_backend(text)
    assert "\n" not in str(error.value)


def test_lists_of_back_ends():
    assert [b.kind for b in parse_backends("cpu, emu,sim")] == ["cpu", "emu", "sim"]
    with pytest.raises(UserError, match="at least 2"):
        parse_backends("emu", at_least=2)
    assert all(isinstance(parse_backend(name.split(":")[0]), Backend) for name in BACKENDS if ":" not in name)
