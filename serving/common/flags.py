"""Command-line pieces every deployable shares, declared with argparse alone (the `kfloop` parser imports
every deployable's flags module, and must stay light).

Each deployable has a `flags.py` (HELP, `add_arguments(parser)`) used by both `kfloop SUBCOMMAND` and
`python -m serving.X`. The KServe roles also accept KServe's own model-server flags: KServe parses
`sys.argv` itself when `kserve.model_server` is first imported (prefixes allowed), where our `--config` would
read as its `--configure_logging`. So a role parses its whole command line here, strictly, and hands KServe
only KServe's flags (`hand_kserve_its_flags`) before importing it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

# Every flag of kserve.model_server.parser (kserve 0.15.2; a unit test compares): the InferenceService
# controller passes a transformer or explainer container --model_name, --predictor_host, --http_port (and
# --workers with containerConcurrency); the rest a user may set in the manifest's args.
KSERVE_FLAGS: tuple[str, ...] = (
    "http_port",
    "grpc_port",
    "workers",
    "max_threads",
    "max_asyncio_workers",
    "enable_grpc",
    "enable_docs_url",
    "enable_latency_logging",
    "configure_logging",
    "log_config_file",
    "access_log_format",
    "model_name",
    "predictor_host",
    "protocol",
    "predictor_protocol",
    "predictor_use_ssl",
    "predictor_request_timeout_seconds",
    "grpc_max_send_message_length",
    "grpc_max_receive_message_length",
    "predictor_request_retries",
)
KSERVE_SWITCHES: tuple[str, ...] = ("enable_predictor_health_check",)
"""KServe's flags that take no value."""
_CONTROLLER_PASSES = {
    "model_name": "the InferenceService's name (passed by KServe's controller)",
    "predictor_host": "the predictor's host, called http://HOST (passed by KServe's controller)",
    "http_port": "REST port (passed by KServe's controller: 8080)",
    "workers": "uvicorn worker processes (passed by KServe's controller with containerConcurrency)",
}


def parser_for(
    module: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    """The `python -m MODULE` parser: the same arguments as the `kfloop` subcommand."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=help)
    add_arguments(parser)
    return parser


def add_role_arguments(parser: argparse.ArgumentParser, section: str) -> None:
    """What every KServe role takes: its config file, and the address a supervisor or manifest gives it."""
    parser.add_argument("--config", help=f"the serving YAML (its `{section}` section)")
    parser.add_argument("--host", help="ignored: KServe's model server binds every address")
    parser.add_argument("--port", type=int, help=f"REST port (overrides {section}.http_port and --http_port)")


def add_kserve_arguments(parser: argparse.ArgumentParser) -> None:
    """KServe's flags: the ones its controller passes, shown; every other one accepted and handed on."""
    group = parser.add_argument_group(
        "KServe model server", "each of kserve.model_server's flags is accepted and passed on to KServe"
    )
    for name in KSERVE_FLAGS:
        shown = _CONTROLLER_PASSES.get(name, argparse.SUPPRESS)
        group.add_argument(f"--{name}", type=int if name == "http_port" else None, help=shown)
    for name in KSERVE_SWITCHES:
        group.add_argument(f"--{name}", action="store_true", help=argparse.SUPPRESS)


def kserve_argv(args: argparse.Namespace) -> list[str]:
    """KServe's flags as given (its own parser converts and checks their values)."""
    given = [f"--{name}={getattr(args, name)}" for name in KSERVE_FLAGS if getattr(args, name) is not None]
    return given + [f"--{name}" for name in KSERVE_SWITCHES if getattr(args, name)]


def hand_kserve_its_flags(args: argparse.Namespace) -> None:
    """Leave in sys.argv only what KServe's import-time parser should see (call before importing kserve)."""
    given = kserve_argv(args)
    if given and "kserve.model_server" in sys.modules:
        raise RuntimeError(f"kserve was imported before its flags were handed over: {given} would be ignored")
    sys.argv[1:] = given
