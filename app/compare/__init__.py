"""The compare window: panes, its worker, the swipe view and the trade-off chart."""
