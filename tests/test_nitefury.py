# amaranth: UnusedElaboratable=no
"""The NiteFury (Artix-7 200T, XDMA over PCIe Gen2 x4): its Vivado project as ``neofpga build``
writes it, without Vivado: the XDMA IP's TCL, the top's Verilog (the IP's ports, the accelerator
and its gateware version), the pins and clock constraints; the build's one-line stop where Vivado
is missing, and its run and report reading with a stand-in Vivado; the beats' clock crossing in
simulation; flash, doctor and the catalogue. The streamed design's project (``--stream``) alike:
the XDMA's second H2C channel in the top and the TCL, its beats paired into the weight stream's
words across the clocks, its gateware version, and the refusals. Nothing here has been through
Vivado."""

import json
import os
import random
import re
import stat
import subprocess
import sys
from types import SimpleNamespace

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from neofpga.boards import vivado
from neofpga.boards.catalog import accelerator_parameters, board_named
from neofpga.boards.flash import default_build_dir
from neofpga.boards.mmcm import mmcm_settings
from neofpga.boards.nitefury import FIFO_DEPTH, GT_LANES, NitefuryTop
from neofpga.boards.xdma import CONFIG, xdma_tcl
from neofpga.contract import design
from neofpga.contract.errors import UserError
from neofpga.contract.gateware_version import gateware_version
from neofpga.hdl.accelerator import Accelerator
from neofpga.hdl.axi_stream import AxiStream
from neofpga.host import doctor
from neofpga.host.cli import main

XDMA_PORTS = ("sys_clk", "sys_rst_n", "pci_exp_txp", "pci_exp_txn", "pci_exp_rxp", "pci_exp_rxn", "axi_aclk",
              "axi_aresetn", "user_lnk_up", "usr_irq_req", "usr_irq_ack", "msi_enable", "msi_vector_width",
              *(f"m_axis_h2c_t{name}_0" for name in ("data", "keep", "last", "valid", "ready")),
              *(f"s_axis_c2h_t{name}_0" for name in ("data", "keep", "last", "valid", "ready")))
"""The XDMA's ports in AXI4-Stream mode with one channel each way (Xilinx's example design's names)."""
H2C_1_PORTS = tuple(f"m_axis_h2c_t{name}_1" for name in ("data", "keep", "last", "valid", "ready"))
"""The second H2C channel's, which the streamed design adds."""


def executable(folder, name, text):
    """A script called ``name`` in ``folder`` (on a PATH that a test sets)."""
    script = folder / name
    script.write_text(text)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def build_without_vivado(folder, *options):
    """``neofpga build --board nitefury OPTIONS`` on a machine without Vivado: (exit code, stderr, build dir)."""
    empty = folder / "bin"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "VIVADO"}
    run = subprocess.run([sys.executable, "-c", "import sys; from neofpga.host.cli import main; "
                          "sys.exit(main(sys.argv[1:]))", "build", "--board", "nitefury", *options, "--build-dir",
                          str(folder / "build")], capture_output=True, text=True, env={**env, "PATH": str(empty)})
    return run.returncode, run.stderr, folder / "build"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """``neofpga build --board nitefury`` on a machine without Vivado: (exit code, stderr, build dir)."""
    return build_without_vivado(tmp_path_factory.mktemp("nitefury"))


@pytest.fixture(scope="module")
def streamed_project(tmp_path_factory):
    """``neofpga build --board nitefury --stream`` on a machine without Vivado (about 30 s: the
    accelerator's Verilog with its 1 MiB of block RAM): (exit code, stderr, build dir)."""
    return build_without_vivado(tmp_path_factory.mktemp("nitefury-stream"), "--stream")


def info_rom(verilog):
    """The INFO bytes of a top's Verilog (its ROM's contents)."""
    rom = dict(re.findall(r"\n    info\[(\d+)\] = 8'h([0-9a-f]{2});", verilog))
    return bytes(int(rom[str(index)], 16) for index in range(len(rom)))


def xdma_ports(verilog):
    """{port: net} of the XDMA's instance in a top's Verilog."""
    instance = re.search(r"\n  xdma_0 xdma \((.*?)\n  \);", verilog, re.S).group(1)
    return dict(re.findall(r"\.(\w+)\(([^)]*)\)", instance))


def assert_project_written(build, what):
    """A build without Vivado: exit 2, one line saying where ``what`` went and how to run it, and
    the project's files there; its folder."""
    code, errors, build_dir = build
    assert code == 2
    assert errors == (f"neofpga build: error: Vivado is not installed: the {what} was written to "
                      f"{build_dir}; run it there where Vivado {vivado.VIVADO_VERSION} is: cd {build_dir} && "
                      "vivado -mode batch -log nitefury.log -source nitefury.tcl\n")
    for name in ("nitefury.v", "nitefury.xdc", "nitefury.tcl", "constraints.xdc", "xdma_0.tcl"):
        assert (build_dir / name).is_file(), name
    return build_dir


def test_without_vivado_the_build_writes_the_project_and_says_how_to_run_it(project):
    build_dir = assert_project_written(project, "nitefury project")
    assert not (build_dir / "nitefury.bit").exists()


def test_the_tcl_makes_and_configures_the_xdma_ip():
    tcl = xdma_tcl()
    assert "create_ip -name xdma -vendor xilinx.com -library ip -module_name xdma_0\n" in tcl
    settings = dict(re.findall(r"CONFIG\.(\w+) \{([^}]*)\}", tcl))
    assert settings == CONFIG
    assert {name: settings[name] for name in ("xdma_axi_intf_mm", "pl_link_cap_max_link_width",
                                              "pl_link_cap_max_link_speed", "axi_data_width", "axisten_freq",
                                              "xdma_rnum_chnl", "xdma_wnum_chnl", "ref_clk_freq")} == {
        "xdma_axi_intf_mm": "AXI_Stream", "pl_link_cap_max_link_width": "X4",
        "pl_link_cap_max_link_speed": "5.0_GT/s", "axi_data_width": "64_bit", "axisten_freq": "250",
        "xdma_rnum_chnl": "1", "xdma_wnum_chnl": "1", "ref_clk_freq": "100_MHz"}
    assert tcl.index("set_property -dict") < tcl.index("generate_target all [get_ips xdma_0]") \
        < tcl.index("synth_ip [get_ips xdma_0]")


def test_the_project_script_makes_the_ip_before_synthesis_and_reads_the_constraints(project):
    _, _, build_dir = project
    script = (build_dir / "nitefury.tcl").read_text()
    assert (build_dir / "xdma_0.tcl").read_text() == xdma_tcl()
    assert "create_project -force -name nitefury -part xc7a200tfbg484-2" in script
    assert script.index('read_xdc "constraints.xdc"') < script.index("source xdma_0.tcl") \
        < script.index("synth_design -top nitefury") < script.index("write_bitstream -force")
    assert "report_timing_summary -datasheet -max_paths 10 -file nitefury_timing.rpt" in script
    assert "report_utilization -file nitefury_utilization_place.rpt" in script


def test_the_verilog_instances_the_xdma_and_holds_the_accelerator_with_its_version(project):
    _, _, build_dir = project
    text = (build_dir / "nitefury.v").read_text()
    connected = xdma_ports(text)
    assert set(connected) == set(XDMA_PORTS)
    assert {connected[f"pci_exp_{lane}"] for lane in ("rxp", "rxn", "txp", "txn")} == {
        "pcie_0__rx__p", "pcie_0__rx__n", "pcie_0__tx__p", "pcie_0__tx__n"}
    assert connected["sys_clk"] == "pcie_refclk" and connected["usr_irq_req"] == "1'h0"
    assert re.search(r"IBUFDS_GTE2 refclk \(\s*\.CEB\(1'h0\),\s*\.I\(pcie_0__clk__p\),\s*\.IB\(pcie_0__clk__n\),"
                     r"\s*\.O\(pcie_refclk\)", text)
    mmcm = re.search(r"MMCME2_BASE #\((.*?)\) mmcm \(", text, re.S).group(1)  # 200 MHz x 5 / 10
    for setting in (".CLKIN1_PERIOD(5.0)", ".CLKFBOUT_MULT_F(5.0)", ".CLKOUT0_DIVIDE_F(10.0)", ".DIVCLK_DIVIDE(32'd1)"):
        assert setting in mmcm
    assert len(re.findall(r"module \\nitefury\.(h2c|c2h)_fifo ", text)) == 2 and "[72:0] r_data" in text  # whole beats

    parameters = accelerator_parameters(board_named("nitefury"))
    version = gateware_version(parameters)
    info = info_rom(text)
    assert info == Accelerator(**parameters, gateware_version=version).info
    assert version.to_bytes(8, "little") in info


def test_the_xdc_places_the_pcie_pins_and_constrains_the_clocks(project):
    _, _, build_dir = project
    pins = (build_dir / "nitefury.xdc").read_text()
    for port, pin in (("pcie_0__clk__p", "F6"), ("pcie_0__clk__n", "E6"), ("pcie_0__rst__io", "J1"),
                      ("pcie_0__clkreq__io", "G1"), ("clk200_0__p", "J19"), ("clk200_0__n", "H19")):
        assert f'set_property LOC {pin} [get_ports "{port}"]' in pins
    for lane, (rx, tx) in enumerate(zip(("B10", "B8", "D11", "D9"), ("B6", "B4", "D5", "D7"))):
        assert f'set_property LOC {rx} [get_ports "pcie_0__rx__p\\[{lane}]"]' in pins
        assert f'set_property LOC {tx} [get_ports "pcie_0__tx__p\\[{lane}]"]' in pins
    assert 'set_property PULLUP "TRUE" [get_ports "pcie_0__rst__io"]' in pins
    assert 'IOSTANDARD "DIFF_SSTL15" [get_ports "pcie_0__clk__p"]' not in pins  # a transceiver's pin takes none
    assert 'create_clock -name pcie_0__clk__p -period 10.0 [get_nets "pcie_0__clk__p"]' in pins
    assert 'create_clock -name clk200_0__p -period 5.0 [get_nets "clk200_0__p"]' in pins

    constraints = (build_dir / "constraints.xdc").read_text()
    for lane, site in enumerate(GT_LANES):
        assert re.search(rf"set_property LOC {site} \[get_cells \{{xdma/inst/xdma_0_pcie2_to_pcie3_wrapper_i/"
                         rf"\S*pipe_lane\[{lane}\]\.gt_wrapper_i/gtp_channel\.gtpe2_channel_i\}}\]", constraints)
    assert "create_generated_clock -name accelerator_clk [get_pins mmcm/CLKOUT0]" in constraints
    assert ("set_clock_groups -asynchronous -group [get_clocks -of_objects [get_pins xdma/axi_aclk]] "
            "-group [get_clocks accelerator_clk]") in constraints
    assert "set_false_path -from [get_ports pcie_0__rst__io]" in constraints


def test_the_beats_cross_between_the_clock_domains_whole():
    """H2C's crossing, 250 MHz to 100 MHz: every beat arrives with its data, keep and last, in order."""
    m = Module()
    m.domains.pcie, m.domains.sync = ClockDomain("pcie"), ClockDomain("sync")
    source, sink = AxiStream(8).create(), AxiStream(8).create()
    NitefuryTop._crossing(m, "fifo", source, sink, "pcie", "sync")
    beats = [(0x0123456789ABCDEF * (n + 1) & (2 ** 64 - 1), (1 << (n % 8 + 1)) - 1, n % 3 == 2)
             for n in range(3 * FIFO_DEPTH)]
    received = []

    async def send(ctx):
        for data, keep, last in beats:
            ctx.set(source.payload, {"data": data, "keep": keep, "last": last})
            ctx.set(source.valid, 1)
            await ctx.tick("pcie").until(source.ready)
        ctx.set(source.valid, 0)

    async def take(ctx):  # ready every other cycle: the FIFO holds beats back too
        ready = 0
        async for _, _, valid, data, keep, last in ctx.tick("sync").sample(
                sink.valid, sink.payload.data, sink.payload.keep, sink.payload.last):
            if valid and ready:
                received.append((data, keep, bool(last)))
            ready ^= 1
            ctx.set(sink.ready, ready)

    simulator = Simulator(m)
    simulator.add_clock(4e-9, domain="pcie")
    simulator.add_clock(10e-9, domain="sync")
    simulator.add_testbench(send)
    simulator.add_process(take)
    simulator.run_until(5e-6)
    assert received == beats


def test_the_build_runs_vivado_and_reads_its_reports(tmp_path, monkeypatch):
    """A stand-in Vivado writes reports in Vivado's format (by hand: none has run here), then timing
    missed: the report, and an error that keeps no bitstream."""
    monkeypatch.setattr(vivado, "write_project", lambda *project: SimpleNamespace(gateware_version=7))
    fake = executable(tmp_path, "vivado", f"#!{sys.executable}\nimport os, sys\n"
                      "open('nitefury.log', 'w').write('route_design\\n')\n"
                      "open('nitefury_timing.rpt', 'w').write(os.environ['TIMING'])\n"
                      f"open('nitefury_utilization_place.rpt', 'w').write({UTILISATION!r})\n"
                      "open('nitefury.bit', 'wb').write(b'bits')\n")
    monkeypatch.setenv("VIVADO", str(fake))
    monkeypatch.setenv("TIMING", timing_report(0.714, 1.406))
    lines = []
    result = vivado.build_vivado_board(board_named("nitefury"), build_dir=tmp_path, log=lines.append)
    assert result["wns_ns"] == 0.714 and result["achieved_mhz"] == pytest.approx(1000 / (10 - 1.406))
    assert result["used"] == {"Slice LUTs": 61234, "Slice Registers": 40321, "Block RAM Tile": 250.5, "DSPs": 149}
    assert result["available"]["DSPs"] == 740 and result["bitstream"] == str(tmp_path / "nitefury.bit")
    assert lines[-2] == ("Slice LUTs 61,234/133,800, Slice Registers 40,321/267,600, Block RAM Tile 250.5/365, "
                         "DSPs 149/740; WNS 0.714 ns; Fmax 116.4 MHz for a 100 MHz clock")
    monkeypatch.setenv("TIMING", timing_report(-0.25, -0.25))
    with pytest.raises(UserError, match=r"^nitefury: timing not met: WNS -0.250 ns \(no bitstream kept; .*"
                                        r"try --freq 97\)$"):
        vivado.build_vivado_board(board_named("nitefury"), build_dir=tmp_path, log=lines.append)
    assert not (tmp_path / "nitefury.bit").exists()


def test_the_dram_design_and_nextpnrs_options_are_one_line_errors(capsys):
    assert main(["build", "--board", "nitefury", "--dram"]) == 2
    assert capsys.readouterr().err == "neofpga build: error: nitefury has no DRAM design\n"
    assert main(["build", "--board", "nitefury", "--seed", "2"]) == 2
    assert capsys.readouterr().err == ("neofpga build: error: --seed and --placer are nextpnr's: nitefury "
                                       "builds with Vivado\n")


def test_the_clock_is_the_designs_or_the_nearest_the_mmcm_makes():
    settings = mmcm_settings(200, 100)
    assert (settings.divclk, settings.mult, settings.divide, settings.vco_mhz) == (1, 5, 10, 1000)
    assert accelerator_parameters(board_named("nitefury"))["clock_hz"] == 100_000_000
    assert accelerator_parameters(board_named("nitefury"), clock_mhz=123)["clock_hz"] == round(
        mmcm_settings(200, 123).output_mhz * 1e6)
    assert NitefuryTop(accelerator_parameters(board_named("nitefury")), 1).settings.output_mhz == 100


def test_flash_programs_through_the_cable_or_says_what_is_missing(tmp_path, monkeypatch, capsys):
    bitstream = tmp_path / "nitefury.bit"
    bitstream.write_bytes(b"\xff")
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["flash", "--board", "nitefury", "--bitstream", str(bitstream)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    executable(tmp_path, "openFPGALoader", f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args.txt\n')
    assert main(["flash", "--board", "nitefury", "--bitstream", str(bitstream), "--persist"]) == 0
    assert (tmp_path / "args.txt").read_text().split() == ["-c", "digilent_hs3", "--fpga-part", "xc7a200tfbg484",
                                                           "--write-flash", str(bitstream)]


def test_doctor_reports_vivado_without_failing_for_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VIVADO", raising=False)
    which = doctor.shutil.which
    monkeypatch.setattr(vivado.shutil, "which", lambda name: None if name == "vivado" else which(name))
    assert main(["doctor"]) == 0
    assert ("GAP vivado: not installed: neofpga build --board nitefury writes the project; run it where Vivado "
            "is\n") in capsys.readouterr().out
    fake = executable(tmp_path, "vivado", "#!/bin/sh\necho 'vivado v2023.2 (64-bit)'\necho 'SW Build 4029153'\n")
    monkeypatch.setenv("VIVADO", str(fake))
    assert main(["doctor", "--format", "json"]) == 0
    check = {c["name"]: c for c in json.loads(capsys.readouterr().out)}["vivado"]
    assert check["ok"] and check["detail"] == f"{fake} (vivado v2023.2 (64-bit): NiteFury builds)"


def test_without_vivado_the_streamed_build_writes_its_project_into_its_own_folder(streamed_project):
    assert_project_written(streamed_project, "nitefury streamed project")
    assert default_build_dir("nitefury", stream=True).as_posix() == "build/nitefury-stream"


def test_the_streamed_projects_xdma_has_two_h2c_channels_and_one_c2h(streamed_project):
    """``xdma_rnum_chnl`` counts the read (H2C) channels, ``xdma_wnum_chnl`` the write (C2H) ones (boards/xdma.py)."""
    _, _, build_dir = streamed_project
    tcl = (build_dir / "xdma_0.tcl").read_text()
    assert tcl == xdma_tcl(2)
    settings = dict(re.findall(r"CONFIG\.(\w+) \{([^}]*)\}", tcl))
    assert settings == {**CONFIG, "xdma_rnum_chnl": "2"} and settings["xdma_wnum_chnl"] == "1"
    assert "source xdma_0.tcl" in (build_dir / "nitefury.tcl").read_text()


def test_the_streamed_top_feeds_the_second_h2c_channel_to_the_weight_stream(streamed_project):
    _, _, build_dir = streamed_project
    text = (build_dir / "nitefury.v").read_text()
    connected = xdma_ports(text)
    assert set(connected) == set(XDMA_PORTS) | set(H2C_1_PORTS)  # and no second C2H channel
    assert connected["m_axis_h2c_tready_1"] == "h2c_1__ready" and connected["m_axis_h2c_tvalid_1"] == "h2c_1__valid"
    assert all("'h" not in connected[port] for port in H2C_1_PORTS)  # nets, not constants
    assert re.search(r"module \\nitefury\.weights_fifo \(", text) and "[128:0] r_data" in text  # whole words + last
    # the DRAM port's block RAM: 65,536 words of 128 bits, a synchronous read, a write enable a byte
    memory = text[text.index("module \\nitefury.host.device.memory ("):]
    assert "reg [127:0] storage [65535:0];" in memory
    for byte in range(16):
        assert f"storage[write_address[15:0]][{8 * byte + 7}:{8 * byte}] <= dram__wdata__payload" in memory
    assert re.search(r"always @\(posedge clk\) begin\n    _0_ <= storage\[dram__cmd__payload\[15:0\]\];", memory)


def test_the_streamed_top_holds_the_streamed_design_and_its_gateware_version(streamed_project, project):
    _, _, build_dir = streamed_project
    board = board_named("nitefury")
    parameters = accelerator_parameters(board, stream=True)
    assert parameters == design.accelerator_parameters(design.BOARD_DESIGNS["nitefury"], stream=True)
    assert {**parameters, "pcie_beat_bytes": 8} == design.simulated_parameters("nitefury", stream=True)
    version = gateware_version(parameters)
    assert version != gateware_version(accelerator_parameters(board))
    info = info_rom((build_dir / "nitefury.v").read_text())
    assert info == Accelerator(**parameters, gateware_version=version).info
    assert info != info_rom((project[2] / "nitefury.v").read_text())
    assert design.boards_running(parameters) == (["nitefury"], parameters)  # what the host recognises in INFO


def test_the_weight_streams_beats_cross_as_whole_words_low_beat_first():
    """The second H2C channel at 250 MHz, the ``weights`` port at 100 MHz: every two 64-bit beats
    one 128-bit word, the first beat its low half, ``last`` the second's and ``keep`` all ones,
    whatever the stalls on either side."""
    m = Module()
    m.domains.pcie, m.domains.sync = ClockDomain("pcie"), ClockDomain("sync")
    source, sink = AxiStream(8).create(), AxiStream(16).create()
    NitefuryTop._weights_crossing(m, "fifo", source, sink, "pcie", "sync")
    rng = random.Random(7)
    beats = [(rng.getrandbits(64), n % 6 == 5) for n in range(6 * FIFO_DEPTH)]
    received = []

    async def send(ctx):
        for data, last in beats:
            ctx.set(source.payload, {"data": data, "keep": 0xFF, "last": last})
            ctx.set(source.valid, 1)
            await ctx.tick("pcie").until(source.ready)
            ctx.set(source.valid, 0)
            if rng.random() < 0.3:
                await ctx.tick("pcie")

    async def take(ctx):
        async for _, _, valid, ready, data, keep, last in ctx.tick("sync").sample(
                sink.valid, sink.ready, sink.payload.data, sink.payload.keep, sink.payload.last):
            if valid and ready:
                received.append((data, keep, bool(last)))
            ctx.set(sink.ready, rng.random() < 0.7)

    simulator = Simulator(m)
    simulator.add_clock(4e-9, domain="pcie")
    simulator.add_clock(10e-9, domain="sync")
    simulator.add_testbench(send)
    simulator.add_process(take)
    simulator.run_until(5e-6)
    assert received == [(low | high << 64, 0xFFFF, last) for (low, _), (high, last) in zip(beats[::2], beats[1::2])]


def test_stream_refusals_are_one_line_errors(tmp_path, monkeypatch, capsys):
    for command in (["build", "--board", "ulx3s-85f", "--stream"], ["flash", "--board", "ecpix5-85", "--stream"]):
        assert main(command) == 2
        board = command[2]
        assert capsys.readouterr().err == (f"neofpga {command[0]}: error: {board} has no streamed design: its link "
                                           "is a UART, and the weights stream over PCIe (nitefury has one)\n")
    for command in ("build", "flash"):
        assert main([command, "--board", "nitefury", "--stream", "--dram"]) == 2
        assert capsys.readouterr().err == f"neofpga {command}: error: --stream and --dram are two designs: give one\n"
    monkeypatch.chdir(tmp_path)
    assert main(["flash", "--board", "nitefury", "--stream"]) == 2
    assert capsys.readouterr().err == ("neofpga flash: error: no bitstream at build/nitefury-stream/nitefury.bit: "
                                       "build it with neofpga build --board nitefury --stream\n")


def test_flash_stream_programs_the_streamed_bitstream(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "build" / "nitefury-stream").mkdir(parents=True)
    (tmp_path / "build" / "nitefury-stream" / "nitefury.bit").write_bytes(b"\xff")
    executable(tmp_path, "openFPGALoader", f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args.txt\n')
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "openFPGALoader"))
    assert main(["flash", "--board", "nitefury", "--stream", "--persist"]) == 0
    assert (tmp_path / "args.txt").read_text().split()[-2:] == ["--write-flash", "build/nitefury-stream/nitefury.bit"]


def timing_report(wns, accelerator_wns):
    """A ``report_timing_summary`` in Vivado's layout: the design's WNS, the accelerator clock's, an
    XDMA clock's and one with no timed paths."""
    columns = ("WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)  "
               "THS Failing Endpoints  THS Total Endpoints     WPWS(ns)     TPWS(ns)  TPWS Failing Endpoints  "
               "TPWS Total Endpoints")
    rule = "-" * 96

    def row(name, slack):
        return f"{name:<20}{slack:>8.3f}        0.000                      0                 1234        0.045" \
               "        0.000                      0                 1234        1.750        0.000" \
               "                       0                   567"
    return "\n".join([
        rule, "| Design Timing Summary", "| ---------------------", rule, "",
        f"    {columns}", "    -------      -------", "  " + row("", wns).strip(), "", "",
        rule, "| Clock Summary", "| -------------", rule, "",
        "Clock               Waveform(ns)       Period(ns)      Frequency(MHz)",
        "clk200_0__p         {0.000 2.500}      5.000           200.000",
        "  accelerator_clk   {0.000 5.000}      10.000          100.000", "",
        rule, "| Intra Clock Table", "| -----------------", rule, "",
        f"Clock               {columns}", "-----               -------",
        "clk200_0__p                                                                                      "
        "                                                                1.000        0.000        0    1",
        row("  accelerator_clk", accelerator_wns), row("  userclk2", wns), "", "",
        rule, "| Inter Clock Table", "| -----------------", rule, ""])


UTILISATION = """1. Slice Logic
--------------

+----------------------------+-------+-------+------------+-----------+-------+
|          Site Type         |  Used | Fixed | Prohibited | Available | Util% |
+----------------------------+-------+-------+------------+-----------+-------+
| Slice LUTs                 | 61234 |     0 |          0 |    133800 | 45.77 |
|   LUT as Logic             | 60000 |     0 |          0 |    133800 | 44.84 |
| Slice Registers            | 40321 |     0 |          0 |    267600 | 15.07 |
+----------------------------+-------+-------+------------+-----------+-------+

2. Memory
---------

+-------------------+-------+-------+------------+-----------+-------+
|     Site Type     |  Used | Fixed | Prohibited | Available | Util% |
+-------------------+-------+-------+------------+-----------+-------+
| Block RAM Tile    | 250.5 |     0 |          0 |       365 | 68.63 |
|   RAMB36/FIFO*    |   240 |     0 |          0 |       365 | 65.75 |
+-------------------+-------+-------+------------+-----------+-------+

3. DSP
------

+----------------+------+-------+------------+-----------+-------+
|    Site Type   | Used | Fixed | Prohibited | Available | Util% |
+----------------+------+-------+------------+-----------+-------+
| DSPs           |  149 |     0 |          0 |       740 | 20.14 |
|   DSP48E1 only |  149 |       |            |           |       |
+----------------+------+-------+------------+-----------+-------+
"""
"""A ``report_utilization`` in Vivado's 7-series layout (with the Prohibited column of recent versions)."""
