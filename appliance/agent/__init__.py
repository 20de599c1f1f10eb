"""The appliance agent (PID 1), one module per area; run as ``python3 -m agent``."""
