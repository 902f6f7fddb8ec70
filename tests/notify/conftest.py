"""Fixtures shared with the web tests: a simulated camera in a process of its own."""

from tests.web.conftest import sim_camera  # noqa: F401 - re-exported as a fixture for tests/notify
