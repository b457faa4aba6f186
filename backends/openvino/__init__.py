"""OpenVINO: runs the ONNX exports of torch and Keras on OpenVINO Runtime (CPU plugin by default)."""
