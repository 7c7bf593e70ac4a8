"""The package's version, in a module of its own so that any module can import it without
importing the package (and so everything the package re-exports)."""

__version__ = "0.1.0"
