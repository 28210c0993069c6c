"""Looks shared by the widget's sections."""

WARNING_STYLE = "color: #e8a33d;"
ERROR_STYLE = "color: #ff6b6b;"
LINK_COLOR = "#7fb8ff"  # readable on the dark and the light theme
SCALE_DECIMALS = 4  # as io.pair_files rounds a measured scale
