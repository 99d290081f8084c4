"""MANAS360: authentication, authorization and subscription core."""

__version__ = "0.1.0"
