"""Attribution by unlearning (UnTrac and UnTrac-Inv, METHOD.md section 4): which training data
set made the model behave as it does on an evaluation set?

- ``sets``: the training and evaluation sets of an experiment, generated or read from files.
- ``lm``: token batches and the per-example loss every method shares.
- ``fit``: the model trained on the mix of training sets, and the leave-one-out retraining.
- ``unlearn``: gradient ascent on a set, with the losses it moves recorded at every epoch.
- ``compare``: GradDot, GradCos, TracIn and influence functions (dattri).
- ``summary``: influence tables, leave-one-out truth and correlations.
- ``plan``: the method names and unlearning variants the workflow plans jobs from (no torch).
"""
