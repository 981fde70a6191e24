"""Synthetic scenes with exact depth for tests, demos and evaluation."""
