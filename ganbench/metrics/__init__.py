"""Evaluation metrics: pure functions from features or statistics to numbers, and the evaluation that feeds them.

fid.py (Fréchet distance), inception_score.py, kid.py, prdc.py (precision/recall) and twod.py (2-D mode measures)
are the metrics; inception.py the feature extractors; refstats.py the cached reference statistics; fingerprint.py
the protocol of a metric row; evaluate.py one pass of samples and features for every metric, in and after training.
"""
