"""DICOM network throughput on loopback (run by hand: `python tests/net/bench_net.py [N]`).

Prints: C-STORE receive rate of the Storage SCP (N copies of a 1 MiB DX image, new SOP Instance UIDs,
one association, pynetdicom SCU), and the send rate of `send_files` into the same SCP.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from pynetdicom import AE

from cxrviewer.net import NodeConfig, RemoteNode, StorageSCP
from cxrviewer.net.send import send_files

SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dicom" / "udacity_nih_test1.dcm"


def main(n: int = 50) -> None:
    ds = pydicom.dcmread(SOURCE)
    size_mb = len(ds.PixelData) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scp = StorageSCP(NodeConfig(ae_title="BENCH", port=0, allowed_ae_titles=("SCU",), inbox=root / "inbox"))
        with scp:
            ae = AE(ae_title="SCU")
            ae.add_requested_context(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])
            assoc = ae.associate(*scp.address, ae_title="BENCH", max_pdu=262144)
            start = time.perf_counter()
            for _ in range(n):
                ds.SOPInstanceUID = generate_uid()
                assert assoc.send_c_store(ds).Status == 0
            elapsed = time.perf_counter() - start
            assoc.release()
            print(f"receive: {n} x {size_mb:.1f} MiB in {elapsed:.2f} s = {n / elapsed:.1f} objects/s, "
                  f"{n * size_mb / elapsed:.1f} MiB/s")

            files = []
            for i in range(n):
                ds.SOPInstanceUID = generate_uid()
                files.append(root / f"{i}.dcm")
                ds.save_as(files[-1], enforce_file_format=True)
            start = time.perf_counter()
            results = send_files(files, RemoteNode(*scp.address, "BENCH"), "SCU")
            elapsed = time.perf_counter() - start
            assert all(r.delivered for r in results)
            print(f"send_files: {n} x {size_mb:.1f} MiB in {elapsed:.2f} s = {n / elapsed:.1f} objects/s "
                  "(read + C-STORE + receive)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
