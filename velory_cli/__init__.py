"""velory: run the renewal of devices bought outside the Velory device platform."""

__version__ = "0.1.0"
