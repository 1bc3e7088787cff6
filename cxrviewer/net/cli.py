"""`cxrviewer-node`: a headless DICOM node that analyses what a PACS pushes and sends the results back.

    cxrviewer-node --allow-ae ORTHANC --remote ORTHANC@127.0.0.1:4242
    cxrviewer-node --config node.json [--port 11112 ...]   # flags override the file

Receives CR / DX / Secondary Capture images (and SR) on 127.0.0.1:11112 as CXRVIEWER unless told
otherwise, analyses each image with the bundled model (or ``--model``), writes a DICOM SR + annotated
Secondary Capture into the outbox and C-STOREs them to ``--remote``; undelivered results stay in the
outbox and are retried every ``--retry-interval`` seconds and at the next start. Runs until Ctrl-C /
SIGTERM. Exit status: 0 after a clean stop, 2 for a usage or configuration error (one line on stderr).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cxrviewer.imaging.log_privacy import install_log_privacy
from cxrviewer.net.config import MIB, ConfigError, Limits, NodeConfig, RemoteNode, load_config
from cxrviewer.net.errors import NetError

PROG = "cxrviewer-node"
log = logging.getLogger("cxrviewer.net.cli")


class UsageError(Exception):
    """Reported in one line; exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="DICOM node: receive chest radiographs from a PACS, "
                                "analyse them and send DICOM SR + Secondary Capture results back. "
                                "Not for diagnostic use.")
    p.add_argument("--config", metavar="FILE", help="JSON node configuration (see docs/pacs.md); flags override it")
    p.add_argument("--ae-title", help="our AE title (default CXRVIEWER)")
    p.add_argument("--port", type=int, help="port to listen on (default 11112)")
    p.add_argument("--bind", metavar="ADDRESS", help="interface address to listen on (default 127.0.0.1)")
    p.add_argument("--allow-ae", action="append", metavar="AE", default=[],
                   help="calling AE title allowed to connect (repeat; at least one is required)")
    p.add_argument("--allow-address", action="append", metavar="IP[/BITS]", default=[],
                   help="peer address or network allowed to connect (repeat; default: any)")
    p.add_argument("--remote", metavar="AE@HOST:PORT", help="where results are sent (default: kept in the outbox)")
    p.add_argument("--inbox", metavar="DIR", help="folder for received files")
    p.add_argument("--outbox", metavar="DIR", help="folder for results waiting to be delivered")
    p.add_argument("--model", metavar="FILE", help="model card (JSON) instead of the bundled model")
    p.add_argument("--allow-modified-card", action="store_true",
                   help="load a model card that does not match its seal (edited after training); every result "
                        "then says 'modified model card'")
    p.add_argument("--no-analysis", action="store_true", help="only receive and store, do not analyse")
    p.add_argument("--max-pdu", type=int, metavar="BYTES", help="largest PDU accepted (default 262144)")
    p.add_argument("--max-object-mb", type=float, metavar="MB", help="refuse larger objects (default 256)")
    p.add_argument("--max-associations", type=int, metavar="N", help="concurrent associations (default 4)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="ACSE and network timeout (default 30 / 60); DIMSE gets twice this")
    p.add_argument("--retry-interval", type=float, default=60.0, metavar="SECONDS",
                   help="how often undelivered results are retried (default 60)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for the network (default: all)")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return p


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    """The configuration file (if any) with the command-line flags applied on top."""
    try:
        config = load_config(args.config) if args.config else NodeConfig()
        changes: dict[str, Any] = {}
        for flag, key in (("ae_title", "ae_title"), ("port", "port"), ("bind", "bind_address")):
            if getattr(args, flag) is not None:
                changes[key] = getattr(args, flag)
        if args.allow_ae:
            changes["allowed_ae_titles"] = tuple(args.allow_ae)
        if args.allow_address:
            changes["allowed_addresses"] = tuple(args.allow_address)
        if args.remote:
            changes["remote"] = RemoteNode.parse(args.remote)
        if args.inbox:
            changes["inbox"] = Path(args.inbox)
        if args.outbox:
            changes["outbox"] = Path(args.outbox)
        limits: Limits = config.limits
        if args.max_pdu is not None:
            limits = replace(limits, max_pdu=args.max_pdu)
        if args.max_object_mb is not None:
            limits = replace(limits, max_object_bytes=int(args.max_object_mb * MIB))
        if args.max_associations is not None:
            limits = replace(limits, max_associations=args.max_associations)
        if args.timeout is not None:
            limits = replace(limits, acse_timeout=args.timeout, network_timeout=args.timeout,
                             connect_timeout=min(args.timeout, limits.connect_timeout),
                             dimse_timeout=2 * args.timeout)
        changes["limits"] = limits
        config = replace(config, **changes).validated()
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if not config.allowed_ae_titles:
        raise UsageError("no calling AE title allowed: give --allow-ae AE (the PACS's AE title)")
    if args.retry_interval <= 0:
        raise UsageError("--retry-interval must be positive")
    return config


def _load_engine(args: argparse.Namespace) -> Any:
    if args.no_analysis:
        return None
    from cxrviewer.model.inference import Engine, ModelError  # torch loads only when analysing

    try:
        allow = args.allow_modified_card
        engine = Engine.from_card(args.model, threads=args.threads, allow_modified_card=allow) if args.model \
            else Engine.bundled(threads=args.threads, allow_modified_card=allow)
    except ModelError as exc:
        raise UsageError(f"model: {exc}") from None
    return engine


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pynetdicom's INFO lines are per-PDU chatter; its debug output can include data set contents.
    # Libraries that log identifiers or data set contents at INFO / DEBUG (highdicom names the UIDs it
    # copies; pynetdicom's INFO lines are per-PDU chatter): warnings only, even with --verbose.
    for name in ("pynetdicom", "highdicom"):
        logging.getLogger(name).setLevel(logging.WARNING)
    install_log_privacy()  # library lines: values redacted, rate-limited


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    from cxrviewer.net.node import Node

    config = config_from_args(args)
    engine = _load_engine(args)
    node = Node(config, engine, retry_interval=args.retry_interval)
    try:
        node.start()
    except NetError as exc:
        raise UsageError(str(exc)) from None
    host, port = node.address
    log.info("%s ready: %s on %s:%d; results to %s; model %s", PROG, config.ae_title, host, port,
             config.remote or "the outbox only", engine.name if engine is not None else "none (no analysis)")
    try:
        stop.wait()
    finally:
        log.info("stopping")
        node.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()  # a frozen build re-enters here to start a decoding helper
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return run(args, stop)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
