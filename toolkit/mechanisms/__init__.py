"""The ways to share memory, behind one interface; a registry picks one by name.

The only package that imports sysv_ipc and posix_ipc.
"""
from __future__ import annotations

import importlib

from toolkit.mechanisms.base import Attachment, Handle, Mechanism  # noqa: F401

_REGISTRY = {
    "sysv": ("toolkit.mechanisms.sysv", "SysV"),
    "posix": ("toolkit.mechanisms.posix", "Posix"),
    "memfd": ("toolkit.mechanisms.memfd", "Memfd"),
    "anon": ("toolkit.mechanisms.memfd", "AnonShared"),
    "dso": ("toolkit.mechanisms.dso", "Dso"),
}


def get(name: str) -> Mechanism:
    try:
        module, cls = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown mechanism {name!r}; known: {', '.join(_REGISTRY)}") from None
    return getattr(importlib.import_module(module), cls)()


def names() -> tuple:
    return tuple(_REGISTRY)
