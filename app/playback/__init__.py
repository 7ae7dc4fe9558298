"""The frame pipeline behind the view: reader, slot, worker threads, model loading, capture, colours."""
