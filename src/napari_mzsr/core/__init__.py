"""The numerics of MZSR: numpy arrays and torch tensors in and out, nothing else.

No module here imports Qt, napari or reads files (beyond kernel files); the pipeline,
the command line and the napari plugin are built on these functions.
"""
