"""optbench: how fast optimized outputs leave the data distribution."""
__version__ = "0.1.0"
