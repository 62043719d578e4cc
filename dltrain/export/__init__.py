"""``dltrain export`` (TensorFlow zone): the inference twin, the per-format writers and the check of every
artefact against model.keras on the run's test split."""
