"""HealthOS appliance: a Healthcare Operating System on one record, one identity, one data model."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("healthos-appliance")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
