"""Faults injected into the `os` module a closeconv module uses (monkeypatch its `os` attribute)."""

import os


class RenameFails:
    """`os` whose `replace` fails: a publish that cannot swap its new file in."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def replace(src, dst):
        raise OSError("simulated: rename failed")
