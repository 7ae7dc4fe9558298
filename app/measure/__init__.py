"""Measuring and scripted runs: live stats, UI stall meter, --benchmark-frames, --screenshot."""
