"""Amaranth gateware of the accelerator: systolic array, requantizer, softmax, GELU, link, top level."""
