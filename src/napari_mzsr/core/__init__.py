"""Algorithms on numpy arrays and torch tensors: no Qt, no napari, no files."""
