"""Handlers run in plain Python with the kernel's semantics: `MyProgram.simulate()`.

compiler.py turns a handler into a Python function (the translator's typing
rules, Python text instead of C); storage.py and buffers.py hold what maps and
buffers hold in the kernel; views.py gives them a loaded program's methods;
simulation.py is what a test uses; packets.py gives packet programs their packets
(make_packet() builds one from header fields).
"""
from pyprobe.errors import SimulationError
from pyprobe.sim.packets import make_packet
from pyprobe.sim.simulation import Simulation, simulate

__all__ = ["Simulation", "SimulationError", "make_packet", "simulate"]
