"""DICOM networking (pynetdicom, no Qt): a Storage SCP with an allow-list, a sender and an outbox.

* `config`  - `NodeConfig`, `RemoteNode`, `Limits` (validated, JSON)
* `scp`     - `StorageSCP`: C-ECHO + C-STORE (CR, DX, SC, SR) into the inbox (`inbox.Inbox`)
* `send`    - `send_files` (C-STORE, a `SendResult` per object), `echo`
* `outbox`  - `Outbox`: results wait there until the remote confirmed them
* `node`    - `Node`: receive, analyse, send back (used by `cxrviewer-node`, `cli`)
"""

from cxrviewer.net.config import ConfigError, Limits, NodeConfig, RemoteNode, load_config, save_config
from cxrviewer.net.errors import NetError
from cxrviewer.net.inbox import Inbox
from cxrviewer.net.outbox import DeliveryReport, Outbox
from cxrviewer.net.scp import Received, StorageSCP
from cxrviewer.net.send import DELIVERED, FAILED, NOT_SENT, SendResult, echo, send_files

__all__ = [
    "DELIVERED",
    "FAILED",
    "NOT_SENT",
    "ConfigError",
    "DeliveryReport",
    "Inbox",
    "Limits",
    "NetError",
    "NodeConfig",
    "Outbox",
    "Received",
    "RemoteNode",
    "SendResult",
    "StorageSCP",
    "echo",
    "load_config",
    "save_config",
    "send_files",
]
