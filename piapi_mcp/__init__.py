"""piapi-mcp: PiAPI's generation API (image, video, music, speech, 3D) as MCP tools that never lose a task."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from piapi_mcp._version import __version__ as __version__

if TYPE_CHECKING:
    from piapi_mcp._version import package_version as package_version
    from piapi_mcp.catalog.flux import KontextInput as KontextInput
    from piapi_mcp.client import PiAPIClient as PiAPIClient
    from piapi_mcp.errors import APIConnectionError as APIConnectionError
    from piapi_mcp.errors import APIStatusError as APIStatusError
    from piapi_mcp.errors import APITimeoutError as APITimeoutError
    from piapi_mcp.errors import AuthenticationError as AuthenticationError
    from piapi_mcp.errors import BadRequestError as BadRequestError
    from piapi_mcp.errors import InvalidResponseError as InvalidResponseError
    from piapi_mcp.errors import MissingAPIKeyError as MissingAPIKeyError
    from piapi_mcp.errors import NotFoundError as NotFoundError
    from piapi_mcp.errors import PiAPIError as PiAPIError
    from piapi_mcp.errors import RateLimitError as RateLimitError
    from piapi_mcp.errors import UpstreamServerError as UpstreamServerError
    from piapi_mcp.mcp_server import create_server as create_server
    from piapi_mcp.models import Task as Task
    from piapi_mcp.models import TaskResult as TaskResult
    from piapi_mcp.server_settings import ServerSettings as ServerSettings
    from piapi_mcp.simulator import Fault as Fault
    from piapi_mcp.simulator import PiAPISimulator as PiAPISimulator
    from piapi_mcp.simulator import SimulatorControls as SimulatorControls
    from piapi_mcp.timing import Clock as Clock
    from piapi_mcp.timing import ManualClock as ManualClock
    from piapi_mcp.timing import SystemClock as SystemClock
    from piapi_mcp.waiting import DurationEstimator as DurationEstimator

#: Where each public name lives: importing the package imports none of them (``python -m piapi_mcp``
#: starts faster), the first use of a name imports its module.
_HOMES: dict[str, str] = {
    "APIConnectionError": "piapi_mcp.errors",
    "APIStatusError": "piapi_mcp.errors",
    "APITimeoutError": "piapi_mcp.errors",
    "AuthenticationError": "piapi_mcp.errors",
    "BadRequestError": "piapi_mcp.errors",
    "Clock": "piapi_mcp.timing",
    "create_server": "piapi_mcp.mcp_server",
    "DurationEstimator": "piapi_mcp.waiting",
    "Fault": "piapi_mcp.simulator",
    "InvalidResponseError": "piapi_mcp.errors",
    "KontextInput": "piapi_mcp.catalog.flux",
    "ManualClock": "piapi_mcp.timing",
    "MissingAPIKeyError": "piapi_mcp.errors",
    "NotFoundError": "piapi_mcp.errors",
    "package_version": "piapi_mcp._version",
    "PiAPIClient": "piapi_mcp.client",
    "PiAPIError": "piapi_mcp.errors",
    "PiAPISimulator": "piapi_mcp.simulator",
    "RateLimitError": "piapi_mcp.errors",
    "ServerSettings": "piapi_mcp.server_settings",
    "SimulatorControls": "piapi_mcp.simulator",
    "SystemClock": "piapi_mcp.timing",
    "Task": "piapi_mcp.models",
    "TaskResult": "piapi_mcp.models",
    "UpstreamServerError": "piapi_mcp.errors",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
