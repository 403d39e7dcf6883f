"""A wrapper around a device: the device's ports it does not take over, passed through unchanged."""

from amaranth.lib import wiring

__all__ = ["other_members", "pass_through"]


def other_members(device, taken):
    """``device``'s signature members but those named in ``taken``: the wrapper's own signature's rest."""
    return {name: member for name, member in device.signature.members.items() if name not in taken}


def pass_through(m, device, wrapper, taken):
    """Connect each of ``wrapper``'s members but those in ``taken`` to ``device``'s of the same name
    (a port by assignment, an interface by :func:`amaranth.lib.wiring.connect`)."""
    for name, member in wrapper.signature.members.items():
        if name in taken:
            continue
        if member.is_port:
            if member.flow == wiring.Out:
                m.d.comb += getattr(wrapper, name).eq(getattr(device, name))
            else:
                m.d.comb += getattr(device, name).eq(getattr(wrapper, name))
        else:
            wiring.connect(m, getattr(device, name), wiring.flipped(getattr(wrapper, name)))
