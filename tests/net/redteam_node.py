"""The red team's node attacks and crashes, replayed against `cxrviewer-node` with the bundled model (run by hand:
`python tests/net/redteam_node.py [--images 40]`); prints one line per check with its figures.

1. a 2 GB A-ASSOCIATE-RQ claim followed by 64 MiB of data: the node's peak RSS before / after;
2. four idle and four byte-dripping connections: how many of 24 C-ECHOs (one a second) succeed, and when
   the eight are closed;
3. N images sent, the node SIGKILLed right after the last C-STORE success: how many were answered before the
   kill, the backlog the restarted node reports, and the time until every image has its answer;
4. the same instance sent three times: results written for it (answered once);
5. throughput: N images answered (SR + SC written) per second by the bundled model, and the node's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from pynetdicom import AE

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO.parent / "shared" / "data" / "dicom" / "udacity_nih_test1.dcm"
AET, PEER = "CXRVIEWER", "REDTEAM"
VERIFICATION = "1.2.840.10008.1.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class NodeProcess:
    def __init__(self, root: Path, port: int, log_name: str) -> None:
        self.log_path = root / log_name
        args = [sys.executable, "-m", "cxrviewer.net.cli", "--ae-title", AET, "--port", str(port), "--allow-ae",
                PEER, "--inbox", str(root / "inbox"), "--outbox", str(root / "outbox"), "--retry-interval", "5"]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        self.port = port
        self.started = time.monotonic()
        while "ready" not in self.log_path.read_text():
            if self.proc.poll() is not None:
                raise SystemExit(self.log_path.read_text())
            time.sleep(0.1)
        self.ready_s = time.monotonic() - self.started

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(60)


def associate(port: int, contexts: list[tuple[str, list[str]]]) -> object:
    ae = AE(ae_title=PEER)
    for sop, syntaxes in contexts:
        ae.add_requested_context(sop, syntaxes)
    ae.acse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title=AET)


def echo(port: int) -> bool:
    assoc = associate(port, [(VERIFICATION, ["1.2.840.10008.1.2"])])
    if not assoc.is_established:  # type: ignore[attr-defined]
        return False
    ok = assoc.send_c_echo().Status == 0  # type: ignore[attr-defined]
    assoc.release()  # type: ignore[attr-defined]
    return bool(ok)


def images(n: int) -> list[pydicom.Dataset]:
    study = generate_uid()
    out = []
    for _ in range(n):
        ds = pydicom.dcmread(SOURCE)
        ds.StudyInstanceUID, ds.SOPInstanceUID = study, generate_uid()
        out.append(ds)
    return out


def send(port: int, datasets: list[pydicom.Dataset]) -> int:
    ds0 = datasets[0]
    assoc = associate(port, [(ds0.SOPClassUID, [ds0.file_meta.TransferSyntaxUID])])
    ok = sum(int(assoc.send_c_store(ds).Status) == 0 for ds in datasets)  # type: ignore[attr-defined]
    assoc.release()  # type: ignore[attr-defined]
    return ok


def journal_count(root: Path) -> int:
    folder = root / "inbox" / ".journal"
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


def results(root: Path) -> list[Path]:
    return [p for p in (root / "outbox").rglob("*.dcm") if not p.name.startswith(".")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    n = args.images
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = free_port()
        node = NodeProcess(root, port, "node1.log")
        print(f"node ready in {node.ready_s:.1f} s (bundled model loaded); RSS {rss_mb(node.proc.pid)[0]:.0f} MiB")

        # 1. a 2 GB association request
        before = rss_mb(node.proc.pid)[1]
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(bytes([1, 0]) + (2 * 1024**3).to_bytes(4, "big"))
        sent = 0
        try:
            chunk = b"\0" * (1 << 20)
            while sent < 64 * (1 << 20):
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        sock.close()
        time.sleep(0.5)
        print(f"1. 2 GB A-ASSOCIATE-RQ: connection closed after {sent / 2**20:.0f} MiB sent; node peak RSS "
              f"{before:.0f} -> {rss_mb(node.proc.pid)[1]:.0f} MiB; C-ECHO after: {echo(port)}")

        # 2. idle and dripping connections
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        drip = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        stop = threading.Event()

        def dripping(s: socket.socket) -> None:
            try:
                s.sendall(bytes([1, 0, 0, 0, 0, 0x44]))
                while not stop.wait(2.0):
                    s.sendall(b"\0")
            except OSError:
                pass

        for s in drip:
            threading.Thread(target=dripping, args=(s,), daemon=True).start()
        t0 = time.monotonic()
        ok = 0
        for _ in range(24):
            ok += echo(port)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0) % 1.0))
        closed = 0
        for s in idle + drip:
            s.settimeout(0.5)
            try:
                closed += s.recv(1) == b""
            except (TimeoutError, OSError):
                pass
        stop.set()
        print(f"2. 4 idle + 4 dripping connections: {ok}/24 C-ECHOs succeeded over {time.monotonic() - t0:.0f} s; "
              f"{closed}/8 attacker connections closed by the node")

        # 3. SIGKILL right after a send
        batch = images(n)
        t0 = time.monotonic()
        stored = send(port, batch)
        send_s = time.monotonic() - t0
        node.stop(signal.SIGKILL)
        answered = journal_count(root)
        node = NodeProcess(root, port, "node2.log")
        t1 = time.monotonic()
        while journal_count(root) < n and time.monotonic() - t1 < 600:
            time.sleep(0.2)
        backlog = [line.split("backlog: ")[1][:60] for line in node.log_path.read_text().splitlines()
                   if "backlog:" in line]
        print(f"3. {stored}/{n} C-STORE successes in {send_s:.1f} s, SIGKILL: {answered} answered before; restart "
              f"reported {backlog[0] if backlog else 'no backlog'}; all {journal_count(root)}/{n} answered "
              f"{time.monotonic() - t1:.1f} s after the restart ({node.ready_s:.1f} s of it loading)")

        # 4. the same instance three times
        one = images(1)
        before_files = len(results(root))
        for _ in range(3):
            send(port, one)
            time.sleep(1.0)
        time.sleep(3.0)
        print(f"4. one instance sent 3 times: {len(results(root)) - before_files} result file(s) written "
              "(SR + SC = 2 means answered once)")

        # 5. throughput with the bundled model
        batch = images(n)
        before_answers = journal_count(root)
        t0 = time.monotonic()
        send(port, batch)
        while journal_count(root) < before_answers + n and time.monotonic() - t0 < 600:
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        print(f"5. {n} images (1024 x 1024 DX) sent and answered in {elapsed:.1f} s = {n / elapsed:.2f} images/s; "
              f"node peak RSS {rss_mb(node.proc.pid)[1]:.0f} MiB")
        node.stop()
        lines = node.log_path.read_text().splitlines()
        print(f"log of the restarted node: {len(lines)} lines for {2 * n + 4} images")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
