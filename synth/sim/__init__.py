"""Simulation for rollouts: user and tool simulators, and real execution in sandboxes where it is safe."""
