"""Training: datasets (data.py), trainer (trainer.py)."""
