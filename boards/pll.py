"""The ECP5 PLL (EHXPLLL): divider settings for a frequency, and the primitive.

The output is CLKOP fed back to CLKFB, so ``f_out = f_in * CLKFB_DIV / CLKI_DIV`` and the VCO runs
at ``f_out * CLKOP_DIV``. The limits are those of Lattice's datasheet, as ``ecppll`` uses them.
"""

from amaranth.hdl import Instance, Signal

__all__ = ["PLLSettings", "pll_settings", "ecp5_pll"]

INPUT_MHZ = (8.0, 400.0)
OUTPUT_MHZ = (3.125, 400.0)
PFD_MHZ = (3.125, 400.0)
VCO_MHZ = (400.0, 800.0)


class PLLSettings:
    """Dividers for one output: ``clki_div``, ``clkfb_div``, ``clkop_div`` and the frequency they give."""

    def __init__(self, input_mhz, clki_div, clkfb_div, clkop_div):
        self.input_mhz, self.clki_div, self.clkfb_div, self.clkop_div = input_mhz, clki_div, clkfb_div, clkop_div
        self.output_mhz = input_mhz * clkfb_div / clki_div
        self.vco_mhz = self.output_mhz * clkop_div

    def __repr__(self):
        return (f"PLLSettings({self.input_mhz} MHz -> {self.output_mhz:.4f} MHz: CLKI_DIV={self.clki_div}, "
                f"CLKFB_DIV={self.clkfb_div}, CLKOP_DIV={self.clkop_div})")


def pll_settings(input_mhz, output_mhz):
    """The settings whose output is closest to ``output_mhz`` (then the VCO nearest 600 MHz);
    ``ValueError`` when the request is outside the PLL's range."""
    if not INPUT_MHZ[0] <= input_mhz <= INPUT_MHZ[1] or not OUTPUT_MHZ[0] <= output_mhz <= OUTPUT_MHZ[1]:
        raise ValueError(f"the ECP5 PLL makes {OUTPUT_MHZ[0]}-{OUTPUT_MHZ[1]} MHz from {INPUT_MHZ[0]}-"
                         f"{INPUT_MHZ[1]} MHz, not {output_mhz} MHz from {input_mhz} MHz")
    best = None
    for clki_div in range(1, 129):
        if not PFD_MHZ[0] <= input_mhz / clki_div <= PFD_MHZ[1]:
            continue
        for clkfb_div in range(1, 81):
            for clkop_div in range(1, 129):
                settings = PLLSettings(input_mhz, clki_div, clkfb_div, clkop_div)
                if not VCO_MHZ[0] <= settings.vco_mhz <= VCO_MHZ[1]:
                    continue
                key = (abs(settings.output_mhz - output_mhz), abs(settings.vco_mhz - 600))
                if best is None or key < best[0]:
                    best = (key, settings)
    return best[1]


def ecp5_pll(clock_in, settings, shifted_degrees=None, name="pll"):
    """An EHXPLLL making ``settings``' frequency from ``clock_in``; returns (instance, clock, locked),
    and with ``shifted_degrees``, (instance, clock, shifted, locked): ``shifted`` the same frequency
    that many degrees later (to the nearest VCO cycle). ``name`` prefixes the signals' names."""
    clock, locked = Signal(name=f"{name}_clkop"), Signal(name=f"{name}_locked")
    secondary = {}
    if shifted_degrees is not None:
        shifted = Signal(name=f"{name}_clkos")
        steps = round(shifted_degrees / 360 * settings.clkop_div)
        secondary = dict(a_FREQUENCY_PIN_CLKOS=f"{settings.output_mhz:.6f}", p_CLKOS_ENABLE="ENABLED",
                         p_CLKOS_DIV=settings.clkop_div, p_CLKOS_CPHASE=settings.clkop_div - 1 + steps,
                         p_CLKOS_FPHASE=0, o_CLKOS=shifted)
    instance = Instance(
        "EHXPLLL",
        a_FREQUENCY_PIN_CLKI=str(settings.input_mhz), a_FREQUENCY_PIN_CLKOP=f"{settings.output_mhz:.6f}",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
        p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=settings.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=settings.clkop_div,
        p_CLKOP_CPHASE=settings.clkop_div - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
        p_CLKFB_DIV=settings.clkfb_div,
        i_RST=0, i_STDBY=0, i_CLKI=clock_in, o_CLKOP=clock, i_CLKFB=clock,
        i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
        i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked, **secondary)
    return (instance, clock, locked) if shifted_degrees is None else (instance, clock, shifted, locked)
