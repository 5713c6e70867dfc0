"""`prunelora search`: the cheapest setting of the methods that passes the evidence on held-out data, within what
retraining would cost, or the honest answer that none does (retrain).

- space.py: the settings each method may try, read from its registry entries (no range is written here)
- engine.py: Optuna's sampler and pruner over them, the study in SQLite (resumable, shareable), the budget
- target.py: whether a trial passes and how far from passing it is (with Retrain, or without it)
- image.py, causal_lm.py: each task's trials (the selection and verdict halves of the unseen data)
- command.py: the command and the winner's delivery through the stage driver; api.py: `prunelora.search`
"""
