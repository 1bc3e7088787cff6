"""Model layer: preprocessing, networks, weights/cards, inference, CAMs and the input gate (no Qt)."""
