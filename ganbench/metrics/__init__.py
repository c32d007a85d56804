"""Evaluation metrics: pure functions from features or statistics to numbers.

fid.py (Fréchet distance), inception_score.py, kid.py, prdc.py (precision/recall) and twod.py (2-D mode measures)
are the metrics; compute.py their settings, row names and the numbers from one set of features; inception.py the
feature extractors; refstats.py the cached reference statistics; fingerprint.py the protocol of a metric row.
Sampling generators and scoring runs is ganbench.evaluation's job.
"""
