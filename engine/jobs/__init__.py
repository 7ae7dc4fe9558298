"""Jobs built on a Segmenter: annotate, batch, evaluate, bench, compare, quantize."""
