"""A PiAPI simulator: a Starlette app that follows PiAPI's documented task contract offline.

``app`` holds the routes and the task state machine, ``faults`` the scripted, random and
connection-level faults, ``render`` the small real files its tasks make.
"""

from __future__ import annotations

from piapi_mcp.simulator.app import (
    FAIL_MARKER,
    UPLOAD_EXTENSIONS,
    UPLOAD_LIMIT_BYTES,
    HostedFile,
    PiAPISimulator,
    SimulatedTask,
    SimulatorControls,
    WebhookDelivery,
    WebhookPoster,
    httpx_poster,
)
from piapi_mcp.simulator.faults import (
    RANDOM_FAULT_KINDS,
    ConnectionFault,
    ConnectionFaultKind,
    Fault,
    FaultBody,
    FaultyTransport,
    RandomFaultKind,
    Route_,
    SimulatedConnectionReset,
    route_of,
)
from piapi_mcp.simulator.render import render_image

__all__ = [
    "FAIL_MARKER",
    "RANDOM_FAULT_KINDS",
    "UPLOAD_EXTENSIONS",
    "UPLOAD_LIMIT_BYTES",
    "ConnectionFault",
    "ConnectionFaultKind",
    "Fault",
    "FaultBody",
    "FaultyTransport",
    "HostedFile",
    "PiAPISimulator",
    "RandomFaultKind",
    "Route_",
    "SimulatedConnectionReset",
    "SimulatedTask",
    "SimulatorControls",
    "WebhookDelivery",
    "WebhookPoster",
    "httpx_poster",
    "render_image",
    "route_of",
]
