"""Fixtures for the DICOM network tests: real servers on loopback.

* DCMTK's command-line tools (`storescu`, `echoscu`, `dsrdump`) - found on PATH, skipping look-alikes
  such as pynetdicom's own `storescu` script in the virtual environment;
* Orthanc (Debian package `orthanc`, binary `Orthanc`, usually /usr/sbin): each instance gets free
  loopback ports, a temporary JSON configuration and storage folder, no plugins, HTTP API on
  127.0.0.1 only (RemoteAccessAllowed false), and is stopped at the end.

Without these tools the tests skip, naming the missing program and the apt command; with
CXR_REQUIRE_PACS=1 (CI) they fail instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cxrviewer.net import NodeConfig, Received, StorageSCP

APT = "apt-get install -y orthanc dcmtk"
ORTHANC_AET = "ORTHANC"
SCP_AET = "CXRTEST"


def _missing(what: str) -> None:
    message = f"{what} not found; install with `{APT}`"
    if os.environ.get("CXR_REQUIRE_PACS") == "1":
        pytest.fail(f"CXR_REQUIRE_PACS=1 but {message}", pytrace=False)
    pytest.skip(message)


def _path_dirs() -> list[str]:
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return dirs + [d for d in ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin") if d not in dirs]


def find_dcmtk(name: str) -> str | None:
    """The DCMTK program `name` (its --version output names DCMTK), else None."""
    for folder in _path_dirs():
        exe = Path(folder) / name
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            continue
        try:
            out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "dcmtk" in (out.stdout + out.stderr).lower():
            return str(exe)
    return None


def find_orthanc() -> str | None:
    for name in ("Orthanc", "orthanc"):
        for folder in _path_dirs():
            exe = Path(folder) / name
            if exe.is_file() and os.access(exe, os.X_OK):
                return str(exe)
    return None


@pytest.fixture(scope="session")
def dcmtk() -> dict[str, str]:
    tools = {name: find_dcmtk(name) for name in ("storescu", "echoscu", "dsrdump")}
    absent = [name for name, exe in tools.items() if exe is None]
    if absent:
        _missing(f"DCMTK tool(s) {', '.join(absent)}")
    return {k: str(v) for k, v in tools.items()}


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    """One Orthanc process with its own config and storage; REST helpers on its HTTP API."""

    def __init__(self, exe: str, folder: Path, modalities: dict[str, tuple[str, str, int]]) -> None:
        self.exe, self.folder = exe, folder
        self.http_port, self.dicom_port = free_port(), free_port()
        self.aet = ORTHANC_AET
        self.config_path = folder / "orthanc.json"
        self.log_path = folder / "orthanc.log"
        storage = folder / "storage"
        config = {
            "Name": "cxrviewer-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "Plugins": [], "LuaScripts": [], "HttpPort": self.http_port, "DicomPort": self.dicom_port,
            "DicomAet": self.aet, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "OrthancExplorerEnabled": False, "WebDavEnabled": False, "SaveJobs": False, "ConcurrentJobs": 1,
            "HttpThreadsCount": 4, "DicomThreadsCount": 2, "StorageCompression": False,
            "DicomScuTimeout": 10, "DicomScpTimeout": 10, "DicomAlwaysAllowStore": True,
            "DicomModalities": {name: list(v) for name, v in modalities.items()},
        }
        self.config_path.write_text(json.dumps(config, indent=1), encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> Orthanc:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's lifetime
        self.proc = subprocess.Popen([self.exe, str(self.config_path)], stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.folder)
        log.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.get("/system")["DicomPort"] == self.dicom_port:
                    return self
            except (OSError, ValueError):
                time.sleep(0.05)
        raise RuntimeError(f"Orthanc did not answer within {timeout} s: {self.log_tail()}")

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled cable would: no goodbye to open associations."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    # -- REST ---------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None, timeout: float = 30.0) -> bytes:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()

    def get(self, path: str) -> Any:
        return json.loads(self.request("GET", path, timeout=5))

    def post(self, path: str, body: bytes | dict[str, Any] | list[Any] | str) -> Any:
        data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else
                                                     json.dumps(body).encode())
        return json.loads(self.request("POST", path, data) or b"null")

    def upload(self, path: Path) -> dict[str, Any]:
        """POST /instances: store a file in Orthanc; returns Orthanc's answer (ID, ParentStudy, ...)."""
        return self.post("/instances", path.read_bytes())

    def study_instances(self, study_id: str) -> list[dict[str, Any]]:
        return self.get(f"/studies/{study_id}/instances")

    def add_modality(self, name: str, aet: str, port: int, host: str = "127.0.0.1") -> None:
        self.request("PUT", f"/modalities/{name}", json.dumps({"AET": aet, "Host": host, "Port": port}).encode())


@pytest.fixture(scope="session")
def orthanc_exe() -> str:
    exe = find_orthanc()
    if exe is None:
        _missing("Orthanc (program `Orthanc`)")
    return str(exe)


@pytest.fixture(scope="session")
def scp_port() -> int:
    """The port our SCP listens on in the Orthanc tests (Orthanc's config names it as modality 'cxr')."""
    return free_port()


@pytest.fixture(scope="session")
def make_orthanc(orthanc_exe: str, tmp_path_factory: pytest.TempPathFactory,
                 scp_port: int) -> Iterator[Any]:
    started: list[Orthanc] = []

    def make() -> Orthanc:
        server = Orthanc(orthanc_exe, tmp_path_factory.mktemp("orthanc"), {"cxr": (SCP_AET, "127.0.0.1", scp_port)})
        started.append(server)
        return server.start()

    yield make
    for server in started:  # ask all to stop at once: each takes a couple of seconds to wind down
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def orthanc(make_orthanc: Any) -> Orthanc:
    """One Orthanc shared by the tests of the session."""
    return make_orthanc()


def wait_until(condition: Any, timeout: float = 20.0, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            if condition():
                return True
        time.sleep(interval)
    return bool(condition())


@pytest.fixture(scope="session")
def waiter() -> Any:
    return wait_until


@pytest.fixture(scope="session")
def dicom_dir(shared_data: Path) -> Path:
    return shared_data / "dicom"


@pytest.fixture(scope="session")
def tiny_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model bundle on a small untrained network (ResNet-18 at 128 px, fixed seed)."""
    import torch

    from cxrviewer.model.network import build_network
    from cxrviewer.model.preprocess import preprocessing_record
    from cxrviewer.model.weights import save_bundle

    labels = ["No Finding", "Cardiomegaly", "Lung Opacity", "Edema", "Pleural Effusion"]
    torch.manual_seed(0)
    net = build_network("resnet18", len(labels)).eval()
    card = {
        "name": "net-test-model", "version": "0.0.1", "input_size": 128,
        "preprocessing": preprocessing_record(128), "labels": labels,
        "thresholds": {lab: 0.5 for lab in labels},
        "validation": {"per_label": {lab: {"auroc": 0.6} for lab in labels}},
        "datasets": [{"name": "NIH ChestX-ray14", "license": "No restrictions on use"}],
        "intended_use": "Tests only.",
    }
    return save_bundle(net, card, tmp_path_factory.mktemp("model") / "net-test.json", fp16=False)


@pytest.fixture(scope="session")
def engine(tiny_card: Path) -> Any:
    from cxrviewer.model.inference import Engine

    return Engine.from_card(tiny_card, threads=1)


GOOD_AE = "GOODSCU"


@pytest.fixture
def make_scp(tmp_path: Path) -> Iterator[Callable[..., tuple[StorageSCP, list[Received], list[str]]]]:
    started: list[StorageSCP] = []

    def make(**changes: Any) -> tuple[StorageSCP, list[Received], list[str]]:
        received: list[Received] = []
        refused: list[str] = []
        settings: dict[str, Any] = {"ae_title": "CXRVIEWER", "port": 0, "allowed_ae_titles": (GOOD_AE,),
                                    "inbox": tmp_path / "inbox", **changes}
        scp = StorageSCP(NodeConfig(**settings), on_received=received.append, on_refused=refused.append)
        scp.start()
        started.append(scp)
        return scp, received, refused

    yield make
    for scp in started:
        scp.stop()


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
