"""Writes test/metrics/sklearn-expected.json: a fixed example and scikit-learn's metrics of it.

Run with /usr/bin/python3 (Debian python3-sklearn); the output is committed, so tests do not need Python.
"""
import json
import sys

import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, confusion_matrix, log_loss, precision_recall_fscore_support,
                             top_k_accuracy_score)

rng = np.random.default_rng(7)
classes = 7
n = 60
labels = rng.integers(0, classes - 1, size=n)  # class 6 never occurs in the labels
logits = rng.normal(size=(n, classes)) + 2.5 * np.eye(classes)[labels]
logits[:, 5] -= 9.0  # class 5 is never predicted
probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
probs = np.round(probs, 6)
probs /= probs.sum(axis=1, keepdims=True)
pred = probs.argmax(axis=1)
labels_all = list(range(classes))

p, r, f, s = precision_recall_fscore_support(labels, pred, labels=labels_all, zero_division=0)
macro = precision_recall_fscore_support(labels, pred, average="macro", zero_division=0)
weighted = precision_recall_fscore_support(labels, pred, average="weighted", zero_division=0)
out = {
    "sklearn": sklearn.__version__,
    "classes": classes,
    "labels": labels.tolist(),
    "probs": probs.tolist(),
    "accuracy": accuracy_score(labels, pred),
    "top5": top_k_accuracy_score(labels, probs, k=5, labels=labels_all),
    "logLoss": log_loss(labels, probs, labels=labels_all),
    "precision": p.tolist(),
    "recall": r.tolist(),
    "f1": f.tolist(),
    "support": s.tolist(),
    "macro": {"precision": macro[0], "recall": macro[1], "f1": macro[2]},
    "weighted": {"precision": weighted[0], "recall": weighted[1], "f1": weighted[2]},
    "confusion": confusion_matrix(labels, pred, labels=labels_all).tolist(),
}
json.dump(out, open(sys.argv[1] if len(sys.argv) > 1 else "test/metrics/sklearn-expected.json", "w"), indent=1)
