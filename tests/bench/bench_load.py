"""Benchmark: load + display conversion of the RG1 chest CR in three encodings (run by hand).

    python tests/bench/bench_load.py [--repeat 10]

Prints the median wall-clock milliseconds of `load_image` (read + decode + modality LUT), `to_display`
(VOI + polarity to 8-bit), the two together, and `model_input`; plus the CPU milliseconds of load+display
(process time: on a machine shared with other jobs this is closer to the uncontended wall time).
Aim (2 CPU cores): uncompressed <= 30 ms, JPEG 2000 <= 250 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from cxrviewer.imaging import load_image, model_input, to_display

FILES = ("RG1_UNCR.dcm", "RG1_J2KI.dcm", "RG1_J2KR.dcm")


def _corpus() -> Path:
    import data_store  # pydicom-data (dev extra)

    return Path(data_store.__file__).parent / "data"


def _median_ms(fn, repeat: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append((clock() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    root = _corpus()
    header = ("file", "load ms", "display ms", "load+display", "(cpu ms)", "model_input")
    print(f"{header[0]:<14}" + "".join(f"{h:>14}" for h in header[1:]))
    for name in FILES:
        path = root / name
        load_image(path)  # warm-up (imports, decoder plug-in discovery)
        image = load_image(path)
        load = _median_ms(lambda p=path: load_image(p), args.repeat)
        display = _median_ms(lambda im=image: to_display(im), args.repeat)
        both = _median_ms(lambda p=path: to_display(load_image(p)), args.repeat)
        cpu = _median_ms(lambda p=path: to_display(load_image(p)), args.repeat, time.process_time)
        model = _median_ms(lambda im=image: model_input(im), args.repeat)
        print(f"{name:<14}" + "".join(f"{v:>14.1f}" for v in (load, display, both, cpu, model)))


if __name__ == "__main__":
    main()
