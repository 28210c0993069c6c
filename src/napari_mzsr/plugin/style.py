"""Looks shared by the widget's sections."""

WARNING_STYLE = "color: #e8a33d;"
ERROR_STYLE = "color: #ff6b6b;"
SCALE_DECIMALS = 4  # as io.pair_files rounds a measured scale
