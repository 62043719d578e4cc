"""What dltrain tells about data and models: evaluate, metrics, plots, data inspection (light zone: TensorFlow
only inside functions that need a model)."""
