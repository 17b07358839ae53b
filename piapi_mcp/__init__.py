"""piapi-mcp: PiAPI's generation API (Flux Kontext first) as MCP tools that never lose a paid task."""

from piapi_mcp._version import __version__ as __version__
from piapi_mcp._version import package_version
from piapi_mcp.catalog.flux import KontextInput
from piapi_mcp.client import PiAPIClient
from piapi_mcp.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InvalidResponseError,
    MissingAPIKeyError,
    NotFoundError,
    PiAPIError,
    RateLimitError,
    UpstreamServerError,
)
from piapi_mcp.models import Task, TaskResult
from piapi_mcp.server import ServerSettings, create_server
from piapi_mcp.simulator import Fault, PiAPISimulator, SimulatorControls
from piapi_mcp.timing import Clock, ManualClock, SystemClock
from piapi_mcp.waiting import DurationEstimator

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "Clock",
    "DurationEstimator",
    "Fault",
    "InvalidResponseError",
    "KontextInput",
    "ManualClock",
    "MissingAPIKeyError",
    "NotFoundError",
    "PiAPIClient",
    "PiAPIError",
    "PiAPISimulator",
    "RateLimitError",
    "ServerSettings",
    "SimulatorControls",
    "SystemClock",
    "Task",
    "TaskResult",
    "UpstreamServerError",
    "create_server",
    "package_version",
]
