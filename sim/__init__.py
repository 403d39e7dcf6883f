"""Simulation: the Verilator/cocotb runner, the testbenches and the simulated board."""
