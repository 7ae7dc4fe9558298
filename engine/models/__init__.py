"""Model definition and files: the TopFormer network, export, checkpoints, the ONNX graph layout, the registry, downloads, dataset descriptions."""
