"""Errors of the DICOM network layer (plain messages, never identifiers)."""

from __future__ import annotations


class NetError(Exception):
    """A network node problem the user can act on (port in use, folder not writable, ...)."""
