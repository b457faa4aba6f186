"""LiteRT (TensorFlow Lite): the Keras model converted to a .tflite file by TensorFlow's converter, run in
the LiteRT interpreter."""
