"""Guest calls that read a Windows registry hive, with libguestfs's ``hivex_*`` names
and meanings (paired with the agent's ``hive`` area, which uses hivex itself).

One hive is open at a time; nodes and values are handles (integers) into it, valid
until :meth:`HivexCalls.hivex_close` or until a filesystem is unmounted (which
closes the hive: its file must not keep the mount busy).  The hive is read-only.
"""

from __future__ import annotations

from .base import GuestCalls, serialised

#: Registry value types (``hivex_value_type``), as hivex numbers them.
REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD, REG_MULTI_SZ, REG_QWORD = 1, 2, 3, 4, 7, 11


class HivexCalls(GuestCalls):
    """Reading registry hives of the mounted guest filesystem."""

    @serialised
    def hivex_open(self, filename: str) -> None:
        """Open the registry hive *filename* (a guest path) read-only, closing any other.
        A damaged hive is an error here or in the call that meets the damage."""
        self._call("hivex_open", path=filename)

    @serialised
    def hivex_close(self) -> None:
        """Close the open hive."""
        self._call("hivex_close")

    @serialised
    def hivex_root(self) -> int:
        """The root node of the open hive."""
        return int(self._call("hivex_root"))

    @serialised
    def hivex_node_name(self, nodeh: int) -> str:
        """The name of node *nodeh*."""
        return str(self._call("hivex_node_name", node=nodeh))

    @serialised
    def hivex_node_children(self, nodeh: int) -> list[int]:
        """The child nodes of *nodeh*."""
        return [int(n) for n in self._call("hivex_node_children", node=nodeh)]

    @serialised
    def hivex_node_get_child(self, nodeh: int, name: str) -> int:
        """The child of *nodeh* called *name* (case-insensitive, as Windows), or 0."""
        return int(self._call("hivex_node_get_child", node=nodeh, name=name))

    @serialised
    def hivex_node_parent(self, nodeh: int) -> int:
        """The parent node of *nodeh*."""
        return int(self._call("hivex_node_parent", node=nodeh))

    @serialised
    def hivex_node_values(self, nodeh: int) -> list[int]:
        """The values of node *nodeh*."""
        return [int(v) for v in self._call("hivex_node_values", node=nodeh)]

    @serialised
    def hivex_node_get_value(self, nodeh: int, key: str) -> int:
        """The value of *nodeh* called *key* (``""``: the default value), or 0."""
        return int(self._call("hivex_node_get_value", node=nodeh, key=key))

    @serialised
    def hivex_value_key(self, valueh: int) -> str:
        """The name (key) of value *valueh*."""
        return str(self._call("hivex_value_key", value=valueh))

    @serialised
    def hivex_value_type(self, valueh: int) -> int:
        """The type of value *valueh* (1 REG_SZ, 3 REG_BINARY, 4 REG_DWORD...)."""
        return int(self._call("hivex_value_type", value=valueh))

    @serialised
    def hivex_value_value(self, valueh: int) -> bytes:
        """The data of value *valueh*, as stored."""
        return bytes.fromhex(str(self._call("hivex_value_value", value=valueh)))

    @serialised
    def hivex_value_string(self, valueh: int) -> str:
        """The data of string value *valueh* (REG_SZ, REG_EXPAND_SZ) as text."""
        return str(self._call("hivex_value_string", value=valueh))

    @serialised
    def hivex_node_values_all(self, nodeh: int) -> dict[str, tuple[int, bytes]]:
        """Every value of node *nodeh*: name -> (type, data), in one call (guestslots's;
        libguestfs needs three calls per value)."""
        return {str(key): (int(kind), bytes.fromhex(str(data)))
                for key, kind, data in self._call("hivex_node_values_all", node=nodeh)}

    @serialised
    def hivex_node_children_named(self, nodeh: int) -> dict[str, int]:
        """The children of node *nodeh* by name, in one call (guestslots's)."""
        return {str(name): int(child)
                for child, name in self._call("hivex_node_children_named", node=nodeh)}
