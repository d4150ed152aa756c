"""Training: the LightningModule and what the train/eval entry points share."""
