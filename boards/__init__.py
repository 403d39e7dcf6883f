"""One module per dev board: platform, clocks, pins, build, program."""
