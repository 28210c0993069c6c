"""Files: theta_M model files, image files with their pixel sizes, atomic writes."""
