"""router/logger.py: the router's logger is assembled once per logging configuration, and follows a new one."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from knflow.cli import configure_logging
from router.logger import Logger


def test_the_logger_is_bound_once_per_configuration_and_follows_a_new_one():
    configure_logging(0)  # warnings and up
    try:
        log = Logger("knflow.router")
        first = log._logger()
        assert log._logger() is first  # no new bound logger per line
        with capture_logs() as lines:  # processors of its own: followed at once
            log.info("node succeeded", run="r1")  # below the configured level: filtered, as the proxy does
            log.warning("sweep failed", error="boom")
        assert lines == [{"event": "sweep failed", "error": "boom", "log_level": "warning"}]
        configure_logging(1)  # info and up
        with capture_logs() as again:
            log.info("node succeeded", run="r1")
        assert again == [{"event": "node succeeded", "run": "r1", "log_level": "info"}]
        assert log._logger() is log._logger() is not first
    finally:
        structlog.reset_defaults()
