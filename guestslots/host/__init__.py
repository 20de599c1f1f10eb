"""The host side of an appliance: its image (build), accelerator, saved states, work
directories, and the one way to run a host tool."""
