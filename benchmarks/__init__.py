"""Benchmarks of napari-mzsr; results are committed in ``benchmarks/results/``."""
