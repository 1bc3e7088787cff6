"""Icons, demo studies and styles, installed as package data."""
