"""Using a trained classifier: predicting with a checkpoint or an exported ONNX file, exporting,
drawing figures."""
