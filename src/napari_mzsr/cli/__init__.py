"""The ``napari-mzsr`` command line."""
