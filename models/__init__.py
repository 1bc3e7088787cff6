"""Bundled model (weights + card), installed as package data."""
