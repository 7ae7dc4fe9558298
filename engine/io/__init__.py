"""Sources and outputs: frame sources, indexed PNG masks, CVAT zips, video writing."""
