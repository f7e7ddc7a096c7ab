"""Backstop: verified database backups into S3, restored only when a person approves."""

__version__ = "0.1.0"
