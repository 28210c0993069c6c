"""The napari front end: manifest (``napari.yaml``), dock widget, layer geometry and
sample data. Importing this package does not import torch."""
