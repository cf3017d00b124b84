"""Data at the edges: NetCDF ⇄ tensors, simulation protocols."""
