"""The package version (one place; read by pyproject and run metadata)."""

__version__ = "0.1.0"
