"""The contract between the gateware and the host: the link protocol, the numeric formats and
tables, the design's parameters, and the gateware version. Plain Python with no dependencies;
``hdl/``, ``sim/``, ``boards/`` and ``host/`` all import it, and it imports none of them
(docs/ARCHITECTURE.md)."""
