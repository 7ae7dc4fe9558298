"""Running a model: ONNX Runtime settings, backends, Segmenter, logits post-processing, the overlay drawing."""
