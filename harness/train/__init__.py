"""`alexbench compare --train`: SGD steps in every backend that trains, judged step by step against the
float64 reference (docs/training.md)."""
