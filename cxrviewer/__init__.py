"""cxrviewer: an offline second-opinion viewer for chest radiographs.

Not for diagnostic use.
"""

__version__ = "0.1.0"
