"""Windows registry hives, read with hivex (the library libguestfs's ``hivex_*`` calls
use), as libguestfs offers them: one open hive at a time, nodes and values by handle.

The hive is a guest file: it is opened as a regular file inside the guest root (a
guest symlink cannot name an appliance file) and handed to hivex by its descriptor.
hivex checks the hive's structure; a handle that is not a node or value of the open
hive, or a damaged hive, is an error for that call, never a crash of the agent.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from .common import Fail
from .state import AgentBase

try:  # python3-hivex, copied into the appliance (see appliance/packages)
    import hivex  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - an appliance built without it
    hivex = None

def _failed(what: str, error: Exception) -> Fail:
    code = getattr(error, "errno", 0) or errno.EINVAL
    said = str(error) if str(error) not in ("", "Success") else os.strerror(code)
    return Fail(f"{what}: {said}", code)


class HiveCalls(AgentBase):
    """hivex_open ... hivex_close, as libguestfs names them."""

    hive: Any

    def _hive(self, what: str) -> Any:
        if self.hive is None:
            raise Fail(f"{what}: no hive is open (call hivex_open first)", errno.EINVAL)
        return self.hive

    def _hivex(self, what: str, method: str, *args: Any) -> Any:
        try:
            return getattr(self._hive(what), method)(*args)
        except (RuntimeError, TypeError, ValueError, OSError) as e:
            raise _failed(what, e) from None

    def close_hive(self) -> None:
        """Let go of the open hive (its file is mapped: a mount under it is busy)."""
        self.hive = None

    def call_hivex_open(self, path: str) -> None:
        if hivex is None:
            raise Fail("hivex (python3-hivex) is not in this appliance", errno.ENOSYS)
        fd = self.root.open_regular(path, os.O_RDONLY)
        try:
            # hivex opens by name: the descriptor's name is the file just checked
            opened = hivex.Hivex(f"/proc/self/fd/{fd}")
        except (RuntimeError, OSError) as e:
            raise _failed(f"hivex_open {path}", e) from None
        finally:
            os.close(fd)
        self.hive = opened

    def call_hivex_close(self) -> None:
        self._hive("hivex_close")
        self.close_hive()

    def call_hivex_root(self) -> int:
        return int(self._hivex("hivex_root", "root"))

    def call_hivex_node_name(self, node: int) -> str:
        return str(self._hivex("hivex_node_name", "node_name", node))

    def call_hivex_node_children(self, node: int) -> list[int]:
        return [int(n) for n in self._hivex("hivex_node_children", "node_children", node)]

    def call_hivex_node_get_child(self, node: int, name: str) -> int:
        found = self._hivex("hivex_node_get_child", "node_get_child", node, name)
        return int(found or 0)

    def call_hivex_node_parent(self, node: int) -> int:
        return int(self._hivex("hivex_node_parent", "node_parent", node))

    def call_hivex_node_values(self, node: int) -> list[int]:
        return [int(v) for v in self._hivex("hivex_node_values", "node_values", node)]

    def call_hivex_node_get_value(self, node: int, key: str) -> int:
        try:
            return int(self._hive("hivex_node_get_value").node_get_value(node, key) or 0)
        except RuntimeError as e:
            if not getattr(e, "errno", 0) and str(e) in ("", "Success"):
                return 0  # hivex: no such value (errno 0)
            raise _failed("hivex_node_get_value", e) from None
        except (TypeError, ValueError) as e:
            raise _failed("hivex_node_get_value", e) from None

    def call_hivex_value_key(self, value: int) -> str:
        return str(self._hivex("hivex_value_key", "value_key", value))

    def call_hivex_value_type(self, value: int) -> int:
        return int(self._hivex("hivex_value_type", "value_type", value)[0])

    def call_hivex_value_value(self, value: int) -> str:
        """The value's data, as hex (the host gives bytes)."""
        return bytes(self._hivex("hivex_value_value", "value_value", value)[1]).hex()

    def call_hivex_value_string(self, value: int) -> str:
        return str(self._hivex("hivex_value_string", "value_string", value))

    def call_hivex_node_values_all(self, node: int, limit: int = 100_000) -> list[list[Any]]:
        """[key, type, data as hex] of every value of *node* (at most *limit*): what
        inspection reads, in one call instead of three per value."""
        out = []
        for value in self._hivex("hivex_node_values", "node_values", node)[:limit]:
            kind, data = self._hivex("hivex_value_value", "value_value", value)
            key = self._hivex("hivex_value_key", "value_key", value)
            out.append([str(key), int(kind), bytes(data).hex()])
        return out

    def call_hivex_node_children_named(self, node: int, limit: int = 100_000) -> list[list[Any]]:
        """[handle, name] of every child of *node* (at most *limit*), in one call."""
        children = self._hivex("hivex_node_children", "node_children", node)[:limit]
        return [[int(c), str(self._hivex("hivex_node_name", "node_name", c))] for c in children]
