"""The work directory's file names, which both backends and the runtime record share."""

from __future__ import annotations

from guestslots.backends.workfiles import Generation, overlay_name, overlay_path


def test_generation_zero_has_unnumbered_files() -> None:
    gen = Generation("/w")
    assert (gen.agent_socket, gen.qmp_socket, gen.console_log) == (
        "/w/agent.sock", "/w/qmp.sock", "/w/console.log")
    assert gen.name("qemu", ".log") == "qemu.log" and gen.path("ram") == "/w/ram"


def test_a_migration_numbers_the_new_process_files() -> None:
    gen = Generation("/w").next().next()
    assert gen.number == 2
    assert (gen.agent_socket, gen.migrate_socket, gen.nbd_socket, gen.path("ram")) == (
        "/w/agent-2.sock", "/w/migrate-2.sock", "/w/nbd-2.sock", "/w/ram-2")


def test_a_recorded_socket_names_its_generation() -> None:
    assert Generation.of("/w/agent.sock") == Generation("/w", 0)
    assert Generation.of("/w/qmp-3.sock") == Generation("/w", 3)
    assert Generation.of("/w/agent-x.sock") == Generation("/w", 0)  # not a number: 0


def test_throwaway_overlays_are_named_by_slot() -> None:
    assert overlay_name(7) == "overlay-slot7.qcow2"
    assert overlay_path("/w", 0) == "/w/overlay-slot0.qcow2"
