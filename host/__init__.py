"""The host side of neofpga: model loading, the float reference, generation and the CLI."""
