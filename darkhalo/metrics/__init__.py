"""Operating-point metrics for a lens finder: completeness at very low false-positive rates."""
