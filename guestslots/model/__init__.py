"""The pure model: slot table, device names, drive checks (no sockets, processes or QEMU)."""
