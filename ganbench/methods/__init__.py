"""Lipschitz methods by name; each is one file plus one registry line."""

from __future__ import annotations

from ganbench.config import MethodConfig
from ganbench.methods import gradnorm, penalties, spectral  # noqa: F401  (registers the methods)
from ganbench.methods.base import METHODS, Method

__all__ = ["METHODS", "Method", "build_method"]


def build_method(cfg: MethodConfig) -> Method:
    return METHODS.get(cfg.name)(cfg)
