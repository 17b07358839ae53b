"""Peak memory of one decompression-bomb output: a ~0.5 MB PNG that declares 13000 x 13000 pixels.

    python benchmarks/hostile_outputs.py [--side 13000] [--repo PATH]

A child process builds the bomb, runs one ordinary kontext_edit (so Pillow and everything else is
loaded), notes its resident memory (VmRSS) and resets its peak (``/proc/self/clear_refs``), then
runs a kontext_edit whose output is the bomb, saved and previewed, and reports its new peak
(VmHWM). All in process: the simulator answers through ``httpx2.ASGITransport``, nothing leaves
the machine. ``--repo`` runs the child against another checkout (e.g. the code before the fix).
Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zlib
from dataclasses import fields
from pathlib import Path
from typing import Any, Final

from _processes import REPO, read_status_kib

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
LIMIT_MIB: Final = 100


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def bomb_png(side: int, alpha: bool = False) -> bytes:
    """An RGB(A) PNG of ``side`` x ``side`` black pixels, compressed row by row (never held whole)."""
    header = side.to_bytes(4, "big") * 2 + bytes([8, 6 if alpha else 2, 0, 0, 0])
    row = b"\x00" * (1 + (4 if alpha else 3) * side)
    packer = zlib.compressobj(9)
    compressed = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (
        PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", compressed) + png_chunk(b"IEND", b"")
    )


async def _child(side: int, alpha: bool, workdir: Path) -> dict[str, Any]:
    import httpx2
    from mcp import Client

    from piapi_mcp import ManualClock, PiAPIClient, PiAPISimulator, ServerSettings, create_server
    from piapi_mcp.media import OutputSaver
    from piapi_mcp.simulator import HostedFile, SimulatorControls

    bomb = bomb_png(side, alpha)
    clock = ManualClock()
    simulator = PiAPISimulator(clock, SimulatorControls(queue_seconds=0, duration=0))
    simulator.controls.files["bomb.png"] = HostedFile(body=bomb, content_type="image/png")
    base = "http://piapi.test"

    def outputs_to(url: str | None) -> None:
        def tamper(data: dict[str, Any]) -> dict[str, Any]:
            if url is not None and str(data.get("status")).lower() == "completed":
                return {**data, "output": {"image_urls": [url]}}
            return data

        simulator.controls.tamper = tamper

    async def resolve(host: str) -> list[str]:
        if host != "piapi.test":
            raise OSError(f"{host} is not known here")
        return ["127.0.0.1"]

    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(simulator.app), base_url=base) as http:
        client = PiAPIClient(
            http, api_key="bench-key", base_url=base, upload_url=f"{base}/api/ephemeral_resource", clock=clock
        )
        options: dict[str, Any] = {"clock": clock, "outputs": OutputSaver(http, workdir), "preview": True}
        if "resolver" in {f.name for f in fields(ServerSettings)}:  # the code before the fix has no seam
            options["resolver"] = resolve
        server = create_server(client, ServerSettings(**options))
        async with Client(server) as session:
            arguments = {"prompt": "warm up", "image": "https://example.com/in.png"}
            outputs_to(None)
            warm = await session.call_tool("kontext_edit", arguments)
            assert not warm.is_error
            idle = read_status_kib(os.getpid(), "VmRSS") or 0
            Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
            outputs_to(f"{base}/files/bomb.png")
            result = await session.call_tool("kontext_edit", {**arguments, "prompt": "the bomb"})
            peak = read_status_kib(os.getpid(), "VmHWM") or 0
    images = (result.structured_content or {}).get("outputs", [{}])
    return {
        "bomb_bytes": len(bomb),
        "declared_pixels": side * side,
        "mode": "RGBA" if alpha else "RGB",
        "idle_rss_kib": idle,
        "peak_kib": peak,
        "peak_above_idle_mib": round((peak - idle) / 1024, 1),
        "previews": sum(1 for block in result.content if getattr(block, "type", "") == "image"),
        "saved": bool(images and images[0].get("path")),
    }


def main() -> None:
    """Run the child and print its figures as JSON, with the verdict against the 100 MB limit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--side", type=int, default=13_000, help="declared width and height")
    parser.add_argument("--alpha", action="store_true", help="RGBA (4 bytes a pixel) instead of RGB")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose piapi_mcp the child runs")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        import anyio

        print(json.dumps(anyio.run(_child, args.side, args.alpha, args.child)))
        return
    with tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "PYTHONPATH": f"{args.repo.resolve()}{os.pathsep}{Path(__file__).parent}"}
        done = subprocess.run(
            [sys.executable, __file__, "--side", str(args.side), "--child", workdir]
            + (["--alpha"] if args.alpha else []),
            capture_output=True,
            text=True,
            env=env,
            cwd=args.repo,
            check=False,
        )
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        sys.exit(done.returncode)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["repo"] = str(args.repo.resolve())
    figures["within_limit"] = figures["peak_above_idle_mib"] < LIMIT_MIB
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
