"""Keras 3 models written the ways people write them, for `alexbench import` and `compare --model`.

Each name here is a SOURCE (`tests/models/keras_models.py:NAME`): a factory callable without
arguments. Keras runs on whatever KERAS_BACKEND says (TensorFlow by default).
"""

import keras
from keras import layers
from keras.regularizers import l2


def paper_alexnet_keras() -> keras.Sequential:
    """The paper's single-column layers as a Keras tutorial writes them: 227x227x3 input,
    activation= inside Conv2D/Dense, padding='same', a softmax head, no LRN and no groups."""
    return keras.Sequential([
        keras.Input((227, 227, 3)),
        layers.Conv2D(96, 11, strides=4, padding="valid", activation="relu"),
        layers.MaxPooling2D(3, strides=2),
        layers.Conv2D(256, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(3, strides=2),
        layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(256, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(3, strides=2),
        layers.Flatten(),
        layers.Dense(4096, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(4096, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(1000, activation="softmax"),
    ], name="paper_alexnet_keras")


def article_alexnet_keras() -> keras.Sequential:
    """The seed article's Keras model, in its structure: batch norm after each block (Keras' eps 1e-3,
    momentum 0.99), l2(0.0005) kernel regularizers, 'same' padding from conv2 on, a softmax head."""
    reg = l2(0.0005)
    model = keras.Sequential(name="Alexnet")
    model.add(keras.Input((227, 227, 3)))
    model.add(layers.Conv2D(96, (11, 11), strides=(4, 4), padding="valid", kernel_regularizer=reg))
    model.add(layers.Activation("relu"))
    model.add(layers.MaxPool2D((3, 3), strides=(2, 2), padding="valid"))
    model.add(layers.BatchNormalization())
    model.add(layers.Conv2D(256, (5, 5), padding="same", kernel_regularizer=reg))
    model.add(layers.Activation("relu"))
    model.add(layers.MaxPool2D((3, 3), strides=(2, 2), padding="valid"))
    model.add(layers.BatchNormalization())
    for filters in (384, 384, 256):
        model.add(layers.Conv2D(filters, (3, 3), padding="same", kernel_regularizer=reg))
        model.add(layers.Activation("relu"))
        model.add(layers.BatchNormalization())
    model.add(layers.MaxPool2D((3, 3), strides=(2, 2), padding="valid"))
    model.add(layers.Flatten())
    model.add(layers.Dense(4096, activation="relu"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(4096, activation="relu"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(1000, activation="softmax"))
    return model


def small_functional_keras() -> keras.Model:
    """A small linear functional model on a 28x32x3 input (C=3, H=28, W=32): 'same' padding with a
    stride (TensorFlow pads the odd pixel at the bottom/right), a batch norm with non-trivial
    statistics, a flatten of a channels-last map feeding a Dense layer."""
    inputs = keras.Input((28, 32, 3))
    x = layers.Conv2D(8, 5, strides=2, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.Conv2D(12, 3, padding="same")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.25)(x)
    outputs = layers.Dense(10)(x)
    model = keras.Model(inputs, outputs, name="small_functional_keras")
    bn = model.layers[4]
    rng = keras.random.SeedGenerator(0)
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([
        keras.ops.convert_to_numpy(keras.random.uniform(gamma.shape, 0.5, 1.5, seed=rng)),
        keras.ops.convert_to_numpy(keras.random.uniform(beta.shape, -0.2, 0.2, seed=rng)),
        keras.ops.convert_to_numpy(keras.random.uniform(mean.shape, -0.5, 0.5, seed=rng)),
        keras.ops.convert_to_numpy(keras.random.uniform(var.shape, 0.5, 2.0, seed=rng)),
    ])
    return model


def branching_keras() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(3, 3, padding="same")(inputs)
    return keras.Model(inputs, layers.Add()([inputs, x]), name="branching_keras")


def lambda_keras() -> keras.Sequential:
    return keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3),
                             layers.Lambda(lambda t: t * 2.0), layers.Flatten(), layers.Dense(2)])


def parity_net_keras() -> keras.Sequential:
    """torch_models.ParityNet as a Keras user writes it: channels-last 28x20x3 input, activation= inside
    Conv2D/Dense, padding='same' (symmetric for these odd kernels at stride 1), a Flatten of a
    channels-last map feeding a Dense layer, a softmax head. Its weights are Keras' own until a test
    sets torch's."""
    return keras.Sequential([
        keras.Input((28, 20, 3)),
        layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(12, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(16, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ], name="parity_net_keras")
