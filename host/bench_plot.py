"""``bench --plot``: a PNG of where a decoded token's time goes on a board, and the ceilings on tok/s.

The left panel stacks a token's projected milliseconds: the round trips (one a command), the UART
bytes both ways, and the device's cycles by kind (of op where the device runs the program, of
product where the host sends each op); the middle one enlarges the device's share, by kind. The
right panel is the roofline of that projection: the tok/s each part would allow alone (the round
trips, the bytes, the device as measured, the array with every multiplier busy every cycle),
against the projection itself.
"""

import os
import tempfile
from pathlib import Path

from ..contract.errors import UserError

__all__ = ["token_time_parts", "ceilings", "plot_token_time"]


def token_time_parts(entry):
    """(label, seconds) of one decoded token, in drawing order: round trips, UART, each kind of device time."""
    projected = entry["projected"]
    seconds = projected["seconds_per_token"]
    parts = [(f"round trips ({entry['per_decoded_token']['link_commands']:.0f} x "
              f"{projected['round_trip_seconds'] * 1e3:g} ms)", seconds["round_trips"]),
             (f"UART bytes ({projected['baud'] / 1e6:g} Mbaud)", seconds["uart"])]
    by_kind = projected["device_seconds_by_kind"]
    parts += [(f"device: {kind}", value) for kind, value in by_kind.items() if value > 0]
    if not by_kind:
        parts.append(("device", seconds["device"]))
    return parts


def ceilings(entry):
    """(label, tok/s): what each part of the projection allows alone, then the projection."""
    projected, per = entry["projected"], entry["per_decoded_token"]
    seconds = projected["seconds_per_token"]
    array = entry["array"]
    ideal = per["device_macs"] / (array["rows"] * array["cols"]) / projected["clock_hz"]
    rows = [("round trips alone", seconds["round_trips"]), ("UART bytes alone", seconds["uart"]),
            (f"{projected['device']} as measured", seconds["device"]),
            (f"array, all {array['rows'] * array['cols']} multipliers busy", ideal)]
    return [(label, 1 / value) for label, value in rows if value > 0] + \
        [("projected", projected["tokens_per_second"])]


def plot_token_time(entry, path, title):
    """Draw ``entry`` (one board back end of bench_backends) into the PNG ``path``, written whole."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    parts, limits = token_time_parts(entry), ceilings(entry)
    figure, (whole, device, roof) = pyplot.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [5, 3, 3]})
    start, colours = 0.0, pyplot.get_cmap("tab10")
    for number, (label, seconds) in enumerate(parts):
        whole.barh(0, seconds * 1e3, left=start, color=colours(number % 10), label=f"{label}: {seconds * 1e3:.3g} ms")
        start += seconds * 1e3
    whole.set_yticks([])
    whole.set_xlabel("milliseconds per decoded token")
    whole.set_title(f"{start:.3g} ms a token: {1e3 / start:,.0f} tok/s projected")
    whole.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=8, frameon=False)
    array = [(label[len("device: "):], seconds) for label, seconds in parts if label.startswith("device")]
    names, values = zip(*array)
    device.barh(range(len(values)), [value * 1e6 for value in values],
                color=[colours((len(parts) - len(array) + n) % 10) for n in range(len(values))])
    device.set_yticks(range(len(values)), names, fontsize=8)
    device.invert_yaxis()
    device.set_xlabel("microseconds per decoded token")
    device.set_title(f"the device's share: {sum(values) * 1e3:.3g} ms")
    labels, values = zip(*limits)
    bars = roof.barh(range(len(values)), values, color=["tab:gray"] * (len(values) - 1) + ["tab:red"])
    roof.set_xscale("log")
    roof.set_yticks(range(len(values)), labels, fontsize=8)
    roof.invert_yaxis()
    roof.set_xlabel("tokens per second (log)")
    roof.set_title("ceilings: each part alone")
    for bar, value in zip(bars, values):
        roof.text(value, bar.get_y() + bar.get_height() / 2, f" {value:,.3g}", va="center", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(suffix=".png", dir=path.parent if str(path.parent) else ".")
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror})") from None
    os.close(descriptor)
    try:
        figure.savefig(temporary, dpi=110)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as an ordinary file, not mkstemp's 0600
        os.replace(temporary, path)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror})") from None
    finally:
        pyplot.close(figure)
        if os.path.exists(temporary):
            os.remove(temporary)
