"""Renderers: records in, text out. Never touches /proc or the OS."""
