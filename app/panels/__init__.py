"""The widgets of the main window: side panels, the video view, legend, banners, empty state."""
