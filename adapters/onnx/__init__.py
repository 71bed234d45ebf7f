"""ONNX graphs: analysis (dimension propagation) and rewriting (work in progress)."""
