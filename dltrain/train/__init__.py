"""Training (TensorFlow zone): runtime and strategy, the train step, the loop and its event handlers,
checkpoints, signals, optimizers and schedules. See docs/architecture.md."""
