"""Membership inference from parameter change: was this text in the model's training data?"""

__version__ = "0.1.0"
