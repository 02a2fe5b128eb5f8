"""Offline router work: labelling, training, evaluation, calibration and sweeps (`qwen-cluster router`).

The request-time router (`deployments.router`) only loads the artifact these jobs write.
"""
