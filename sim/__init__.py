"""Simulation: cocotb benches on Verilator, stream helpers, and the build runner."""
