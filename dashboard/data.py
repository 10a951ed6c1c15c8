"""The data layer's queries behind short-lived caches keyed on the published file.

`Warehouse.cache_key` changes when the pipeline publishes, so a new warehouse shows up on the
next rerun; the TTL bounds how long an unchanged answer is reused (and memory). The Warehouse
object itself is not hashed (leading underscore): its cache_key stands for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

CACHE_TTL_S = 60


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=1000)
def _cached(qualname: str, cache_key: str, args_key: str, _fn: Callable, _args: tuple, _kwargs: dict) -> Any:
    return _fn(*_args, **_kwargs)


def cached(fn: Callable, wh, *args, **kwargs) -> Any:
    """fn(wh, *args, **kwargs), cached per published file and arguments (frozen dataclasses,
    dates, strings and numbers, whose repr is stable)."""
    args_key = repr((args, sorted(kwargs.items())))
    return _cached(f"{fn.__module__}.{fn.__qualname__}", wh.cache_key, args_key, fn, (wh, *args), kwargs)
