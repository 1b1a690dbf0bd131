"""The router's structlog logger, bound once per logging configuration.

`structlog.get_logger()` returns a lazy proxy that, with `cache_logger_on_first_use=False` (knflow/cli.py:
tests and commands configure logging more than once), assembles a new bound logger on every call, a line
filtered out by its level included, and the router logs each result and each run's start and end. `Logger`
keeps the assembled logger until `structlog.configure` changes what it was built from, so a filtered line
costs a dictionary of the configuration and a method call, and a new configuration (`capture_logs` in a
test) is still followed.
"""

from __future__ import annotations

from typing import Any

import structlog


class Logger:
    def __init__(self, name: str) -> None:
        self.name = name
        self._config: dict[str, Any] = {}
        self._bound: Any = None

    def _logger(self) -> Any:
        config, had = structlog.get_config(), self._config
        if (
            config["processors"] is not had.get("processors")
            or config["wrapper_class"] is not had.get("wrapper_class")
            or config["logger_factory"] is not had.get("logger_factory")
            or config["context_class"] is not had.get("context_class")
        ):
            self._bound = structlog.get_logger(self.name).bind()
            self._config = config
        return self._bound

    def debug(self, event: str, **fields: Any) -> None:
        self._logger().debug(event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._logger().info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._logger().warning(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._logger().error(event, **fields)
