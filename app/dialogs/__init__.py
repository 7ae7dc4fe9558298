"""Secondary windows (Annotate video, Models, Help) and the background jobs they start."""
