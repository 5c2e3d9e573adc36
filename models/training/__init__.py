"""Training a classifier: settings and recipes, the trainer, checkpoints (the project's and the
authors'), run folders, model cards, the sinc cut-offs' treatment."""
