"""What one photographic output costs: the completed result's size, and one preview's time and memory.

Run from the repository: ``python -m benchmarks.previews`` (``--runs N`` for the timing). It uses the
simulator's 1024x1024 photograph (``piapi_mcp/simulator/data/photo.jpg``) as a JPEG output and the
same picture re-encoded as PNG, and prints, per format:

- ``result``: bytes of the serialised ``CallToolResult`` of one completed ``flux_generate`` call
  (in process, simulator on a manual clock, outputs saved to a temporary folder, previews on);
- ``preview``: the preview's side, MIME type and base64 bytes;
- ``peak``: the growth of peak RSS (``VmHWM``, reset just before) while one preview is made, in a
  fresh process with glibc's mmap threshold fixed at 64 KiB (Pillow's pixel buffers are not seen
  by tracemalloc, so RSS is what counts), and tracemalloc's peak beside it;
- ``time``: the median wall time of ``make_preview`` over ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.types import ImageContent

from piapi_mcp import (
    ManualClock,
    PiAPIClient,
    PiAPISimulator,
    ServerSettings,
    SimulatorControls,
    create_server,
)
from piapi_mcp.media import OUTPUT_JPEG, OUTPUT_PNG, OutputSaver, make_preview

_BASE_URL = "http://piapi.test"
_KEY = "bench-key-0123456789abcdef"
FORMATS = {"jpeg": OUTPUT_JPEG, "png": OUTPUT_PNG}


def photo_bytes(fmt: str) -> bytes:
    """The simulator's photograph as ``fmt`` (``jpeg``: the shipped file; ``png``: re-encoded)."""
    shipped = (resources.files("piapi_mcp.simulator") / "data" / "photo.jpg").read_bytes()
    if fmt == "jpeg":
        return shipped
    from PIL import Image

    out = io.BytesIO()
    with Image.open(io.BytesIO(shipped)) as image:
        image.save(out, format="PNG")
    return out.getvalue()


async def result_size(fmt: str) -> dict[str, Any]:
    """Serialised size of one completed result whose output is the photograph as ``fmt``."""
    from piapi_mcp.simulator import HostedFile

    clock = ManualClock()
    simulator = PiAPISimulator(clock, SimulatorControls(queue_seconds=0, duration=0))
    simulator.controls.files["photo"] = HostedFile(
        body=photo_bytes(fmt), content_type="image/png" if fmt == "png" else "image/jpeg"
    )

    def tamper(data: dict[str, Any]) -> dict[str, Any]:
        if str(data.get("status")).lower() == "completed":
            data = {**data, "output": {"image_url": f"{_BASE_URL}/files/photo"}}
        return data

    simulator.controls.tamper = tamper

    async def resolve(host: str) -> list[str]:
        return ["127.0.0.1"]

    with tempfile.TemporaryDirectory() as folder:
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(simulator.app), base_url=_BASE_URL
        ) as http:
            client = PiAPIClient(
                http, api_key=_KEY, base_url=_BASE_URL, upload_url=f"{_BASE_URL}/x", clock=clock
            )
            settings = ServerSettings(clock=clock, outputs=OutputSaver(http, Path(folder)), resolver=resolve)
            async with Client(create_server(client, settings), raise_exceptions=True) as session:
                result = await session.call_tool(
                    "flux_generate", {"prompt": "a lighthouse at dawn", "width": 1024, "height": 1024}
                )
    previews = [block for block in result.content if isinstance(block, ImageContent)]
    shown: dict[str, Any] = {"result_bytes": len(result.model_dump_json(by_alias=True, exclude_none=True))}
    if previews:
        from PIL import Image

        with Image.open(io.BytesIO(base64.b64decode(previews[0].data))) as thumb:
            shown |= {"preview_size": list(thumb.size), "preview_mime": previews[0].mime_type}
        shown["preview_base64_bytes"] = len(previews[0].data)
    return shown


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (Linux)."""
    return int(Path("/proc/self/status").read_text().split(f"{field}:")[1].split()[0])


def _reset_peak_rss() -> int:
    """Reset this process's peak RSS to its current RSS (Linux ≥ 4.0) and return it in KiB.

    Without it the peak is the imports' transient peak, which can hide the preview's whole cost.
    """
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def preview_cost(fmt: str, source: Path, runs: int) -> dict[str, Any]:
    """Peak memory of one preview of ``source`` (this process must be fresh), median time over ``runs``."""
    data = source.read_bytes()
    kind = FORMATS[fmt]
    import PIL.Image  # noqa: F401  (its import is not the preview's cost)

    before = _reset_peak_rss()
    tracemalloc.start()
    made = make_preview(data, kind)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    after = _status_kib("VmHWM")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        make_preview(data, kind)
        times.append(time.perf_counter() - start)
    return {
        "input_bytes": len(data),
        "peak_rss_growth_kib": after - before,
        "tracemalloc_peak_kib": traced_peak // 1024,
        "preview_bytes": len(made[0]) if made else None,
        "median_ms": round(statistics.median(times) * 1000, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print one JSON line per format: result size and preview cost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs of make_preview per format")
    parser.add_argument("--child", nargs=2, metavar=("FORMAT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(preview_cost(args.child[0], Path(args.child[1]), args.runs)))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        for fmt in FORMATS:
            # A fresh process per format, handed the bytes ready-made: peak RSS only grows, so
            # nothing but the preview may raise it there.
            source = Path(folder) / f"photo.{fmt}"
            source.write_bytes(photo_bytes(fmt))
            command = [sys.executable, "-m", "benchmarks.previews", "--child", fmt, str(source)]
            child = subprocess.run(
                [*command, "--runs", str(args.runs)],
                # Large buffers straight from mmap (glibc): otherwise they reuse heap pages the
                # imports touched, and the preview's peak hides under the imports' peak.
                env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
                check=True,
                capture_output=True,
                text=True,
            )
            cost = json.loads(child.stdout)
            print(json.dumps({"format": fmt, **anyio.run(result_size, fmt), **cost}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
