"""Load generation: the open-loop generator and the shop's workloads."""
