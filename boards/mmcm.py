"""The 7-series MMCM (MMCME2_BASE): divider settings for a frequency, and the primitive.

``f_out = f_in * CLKFBOUT_MULT_F / (DIVCLK_DIVIDE * CLKOUT0_DIVIDE_F)``, whole numbers only, with
the VCO at ``f_in * CLKFBOUT_MULT_F / DIVCLK_DIVIDE``. The limits are those of the Artix-7 data
sheet (DS181) for speed grade -2, the NiteFury's.
"""

from amaranth.hdl import Instance, Signal

__all__ = ["MMCMSettings", "mmcm_settings", "mmcm"]

OUTPUT_MHZ = (4.69, 400.0)   # what the accelerator may ask for; the MMCM itself reaches 628
PFD_MHZ = (10.0, 450.0)
VCO_MHZ = (600.0, 1440.0)


class MMCMSettings:
    """Dividers for one output: ``divclk``, ``mult``, ``divide`` and the frequency they give."""

    def __init__(self, input_mhz, divclk, mult, divide):
        self.input_mhz, self.divclk, self.mult, self.divide = input_mhz, divclk, mult, divide
        self.vco_mhz = input_mhz * mult / divclk
        self.output_mhz = self.vco_mhz / divide

    def __repr__(self):
        return (f"MMCMSettings({self.input_mhz} MHz -> {self.output_mhz:.4f} MHz: DIVCLK_DIVIDE={self.divclk}, "
                f"CLKFBOUT_MULT_F={self.mult}, CLKOUT0_DIVIDE_F={self.divide})")


def mmcm_settings(input_mhz, output_mhz):
    """The settings whose output is closest to ``output_mhz`` (then the VCO nearest 1 GHz);
    ``ValueError`` when the request is outside the range."""
    if not OUTPUT_MHZ[0] <= output_mhz <= OUTPUT_MHZ[1]:
        raise ValueError(f"the MMCM makes {OUTPUT_MHZ[0]}-{OUTPUT_MHZ[1]} MHz here, not {output_mhz} MHz")
    best = None
    for divclk in range(1, 107):
        if not PFD_MHZ[0] <= input_mhz / divclk <= PFD_MHZ[1]:
            continue
        for mult in range(2, 65):
            for divide in range(1, 129):
                settings = MMCMSettings(input_mhz, divclk, mult, divide)
                if not VCO_MHZ[0] <= settings.vco_mhz <= VCO_MHZ[1]:
                    continue
                key = (abs(settings.output_mhz - output_mhz), abs(settings.vco_mhz - 1000))
                if best is None or key < best[0]:
                    best = (key, settings)
    return best[1]


def mmcm(clock_in, settings):
    """An MMCME2_BASE making ``settings``' frequency from ``clock_in``, its output through a BUFG;
    returns (MMCM instance, BUFG instance, clock, locked)."""
    feedback, unbuffered = Signal(name="mmcm_feedback"), Signal(name="mmcm_clkout0")
    clock, locked = Signal(name="mmcm_clock"), Signal(name="mmcm_locked")
    instance = Instance(
        "MMCME2_BASE",
        p_BANDWIDTH="OPTIMIZED", p_CLKIN1_PERIOD=round(1000 / settings.input_mhz, 3),
        p_DIVCLK_DIVIDE=settings.divclk, p_CLKFBOUT_MULT_F=float(settings.mult),
        p_CLKOUT0_DIVIDE_F=float(settings.divide), p_CLKOUT0_PHASE=0.0, p_CLKOUT0_DUTY_CYCLE=0.5,
        i_CLKIN1=clock_in, i_CLKFBIN=feedback, o_CLKFBOUT=feedback, o_CLKOUT0=unbuffered,
        o_LOCKED=locked, i_PWRDWN=0, i_RST=0)
    return instance, Instance("BUFG", i_I=unbuffered, o_O=clock), clock, locked
