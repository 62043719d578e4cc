"""``dltrain predict`` and ``dltrain.load_run``: a run's best model on new data (light at module level).

``inputs`` finds and reads what a user hands in (image files, arrays, CSV rows, texts, a series) the way the run's
data kind read its training data; ``output`` turns model outputs into rows (CSV or JSON, written atomically) and
imports nothing heavy, so a TensorFlow-free predictor can reuse it; ``engine`` loads ``model.keras`` and streams
batches through it (Keras and TensorFlow imported inside its functions); ``api`` is the notebook interface.
"""
