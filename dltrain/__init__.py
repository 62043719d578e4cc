"""dltrain: train Keras 3 / TensorFlow models from strict YAML experiment configs."""

__version__ = "0.1.0"
