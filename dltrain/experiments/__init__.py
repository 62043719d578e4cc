"""Experiments (light zone): list and compare run directories, hyper-parameter sweeps on Optuna.

``runs.py`` reads only small files (run.json, config.yaml, metrics.csv, eval/*/metrics.json) and never
imports TensorFlow, so ``dltrain runs ls`` answers in a fraction of a second on a folder of 1,000 runs.
``sweep.py`` runs each trial as a child ``dltrain fit`` process. See docs/architecture.md, "Experiments".
"""
