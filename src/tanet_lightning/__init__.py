"""tanet-lightning: temporal modules (TAM/TANet first) on timm backbones, trained with Lightning + Hydra."""

__version__ = "0.1.0"
