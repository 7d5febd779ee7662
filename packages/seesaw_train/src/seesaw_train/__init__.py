"""seesaw_train — LM pretraining with the Seesaw batch ramp (PyTorch Lightning), vs cosine."""

__version__ = "0.1.0"
