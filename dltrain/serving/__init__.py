"""Serving an export folder without TensorFlow (light zone): read its export.json, decode and encode the inputs
(Pillow for images, the recorded vocabulary for text), run the artefact with onnxruntime or LiteRT."""
