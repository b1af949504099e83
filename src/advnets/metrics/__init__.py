"""Evaluation metrics: the paper's Parzen estimate, the domain classifiers and the sample-quality metrics."""
