"""cxrviewer: an offline second-opinion viewer for chest radiographs.

Not for diagnostic use.
"""

import os

__version__ = "0.1.0"

# OpenMP worker threads that spin while waiting steal the CPU from the GUI and from other processes on
# small machines (a ResNet-18 forward took 351 ms instead of 44 ms on a loaded 2-core machine). Passive
# waiting must be chosen before torch is imported; a user's explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
