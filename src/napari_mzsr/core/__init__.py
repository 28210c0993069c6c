"""Numerical core of napari-mzsr: numpy and torch only, no Qt, napari or files."""
