"""The classification metrics every layer reports the same way: training, eval and the score ensemble."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy


def accuracy_metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
            "mean_class_acc": MulticlassAccuracy(num_classes, top_k=1, average="macro"),
        },
        prefix=prefix,
        # torchmetrics merges metrics whose states are equal after the first update into one compute
        # group: top-1 and top-5 agree on many a first batch, and top-5 then reported top-1 all epoch
        compute_groups=False,
    )
