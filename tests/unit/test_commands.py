"""The command table: derived from the API, arguments bound as guestfish binds them."""

from __future__ import annotations

import pytest

from guestslots.commands import COMMANDS, UsageError, format_result, format_slot, lookup
from guestslots.model.drives import DriveSpec
from guestslots.model.slots import Slot, SlotState


def test_every_public_method_is_a_command_with_help() -> None:
    for name in ("add-drive", "launch", "hotplug", "unplug", "slots", "list-devices",
                 "list-filesystems", "mount-ro", "download", "inspect-os", "shutdown"):
        assert name in COMMANDS
        assert COMMANDS[name].summary, name
    assert "mounted" not in COMMANDS and "close" not in COMMANDS


def test_aliases_and_spellings() -> None:
    assert lookup("run").name == "launch"
    assert lookup("add").name == "add-drive"
    assert lookup("list_devices").name == "list-devices"
    with pytest.raises(UsageError, match="unknown command"):
        lookup("frobnicate")


def test_bind_positional_and_name_value_arguments() -> None:
    assert lookup("hotplug").bind(["-1", "/i/a.qcow2", "format:qcow2", "readonly:false",
                                   "label:data"]) == {
        "index": -1, "path": "/i/a.qcow2", "format": "qcow2", "readonly": False, "label": "data"}
    assert lookup("unplug").bind(["0x1b", "force:yes"]) == {"index": 27, "force": True}
    # a leading 0 is octal, as guestfish reads numbers (strtol, base 0)
    assert lookup("chmod").bind(["0755", "/f"]) == {"mode": 0o755, "path": "/f"}
    assert lookup("chmod").bind(["0", "/f"])["mode"] == 0
    assert lookup("part-add").bind(["/dev/sda", "p", "2048", "-2048"])["endsect"] == -2048
    assert lookup("resolve-link").bind(["/dev/disk/guestslots/x", "timeout:2.5"])["timeout"] == 2.5
    # a colon in a required argument is just part of it
    assert lookup("cat").bind(["/a:b"]) == {"path": "/a:b"}
    # a list is one word of space-separated items, as in guestfish
    assert lookup("vg-activate").bind(["true", "vg0 data-vg"]) == {
        "activate": True, "volgroups": ["vg0", "data-vg"]}
    assert lookup("vg-activate").bind(["false", ""]) == {"activate": False, "volgroups": []}
    # an optional list too (it was taken as one string, and iterated letter by letter)
    assert lookup("tar-out").bind(["/", "/t.tar", "excludes:./var ./tmp", "compress:gzip"]) == {
        "directory": "/", "tarfile": "/t.tar", "excludes": ["./var", "./tmp"],
        "compress": "gzip"}


@pytest.mark.parametrize(
    ("words", "message"),
    [([], "missing argument"), (["1", "/a", "/b"], "unexpected argument"),
     (["x", "/a"], "expected an integer"), (["1", "/a", "readonly:maybe"], "true or false")],
)
def test_bind_errors_say_what_is_wrong(words: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        lookup("hotplug").bind(words)


def test_usage_shows_optional_arguments() -> None:
    assert lookup("unplug").usage == "unplug index [force:false] [flags:current]"


def test_format_result() -> None:
    assert format_result(None) is None
    assert format_result(True) == "true"
    assert format_result(["/dev/sda", "/dev/sdb"]) == "/dev/sda\n/dev/sdb"
    assert format_result({"/dev/sda1": "ext4"}) == "/dev/sda1: ext4"
    assert format_result(b"\xff") == b"\xff"
    slot = Slot(2, SlotState.FILLED, DriveSpec("/i/a.img", "raw", True, "base"), "sda")
    assert format_slot(slot) == "2 /dev/sdc filled /i/a.img raw ro serial:base label:base"
    assert format_slot(Slot(0, SlotState.EMPTY)) == "0 /dev/sda empty"


def test_the_command_table_is_an_explicit_choice() -> None:
    from guestslots import Appliance
    from guestslots.commands import CALLS, COMMANDS

    assert len(CALLS) == len(set(CALLS)) == len(COMMANDS)
    public = {n for n in dir(Appliance) if not n.startswith("_")}
    assert set(CALLS) <= public
    for not_a_command in ("mounted", "close", "pid", "state"):
        assert not_a_command.replace("_", "-") not in COMMANDS


def test_help_is_plain_text() -> None:
    from guestslots.commands import COMMANDS, plain_text

    for command in COMMANDS.values():
        assert "``" not in command.doc and ":meth:" not in command.doc, command.name
        assert ":class:" not in command.doc, command.name
    assert plain_text("Like :meth:`add_drive`; ``x`` is *big*::\n") == \
        "Like add-drive; x is big:\n"


def test_flags_as_the_shell_types_them() -> None:
    from guestslots import CONFIG, LIVE

    hotplug = lookup("hotplug")
    assert hotplug.bind(["1", "a.img", "flags:live"])["flags"] == LIVE
    assert hotplug.bind(["1", "a.img", "flags:live|config"])["flags"] == LIVE | CONFIG
    assert hotplug.bind(["1", "a.img", "flags:current"])["flags"] == 0
    with pytest.raises(UsageError, match="unknown flag 'persistent'"):
        hotplug.bind(["1", "a.img", "flags:persistent"])


def test_migrate_takes_its_typed_parameters_as_name_value_words() -> None:
    from typing import Any

    from guestslots.model.migration import MigrationParams, MigrationProgress

    class Recorder:
        def migrate(self, **kwargs: Any) -> MigrationProgress:
            self.kwargs = kwargs
            return MigrationProgress("completed", transferred=7, downtime_ms=12)

    app = Recorder()
    cmd = lookup("migrate")
    assert "[bandwidth:0]" in cmd.usage and "[disks:[]]" in cmd.usage
    result = cmd.call(app, ["bandwidth:32", "disks:0 2"])  # type: ignore[arg-type]
    assert app.kwargs == {"params": MigrationParams(bandwidth=32, disks=[0, 2])}
    assert "downtime_ms: 12" in str(format_result(result))
    cmd.call(app, ["with_disk_set:true", "disk_directory:/srv/copies"])  # type: ignore[arg-type]
    assert app.kwargs == {"params": MigrationParams(with_disk_set=True,
                                                    disk_directory="/srv/copies")}
    with pytest.raises(UsageError, match="'bandwidth': -1 is negative"):
        cmd.call(app, ["bandwidth:-1"])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="disks"):
        cmd.call(app, ["disks:zero"])  # type: ignore[arg-type]


def test_the_call_reference_in_docs_is_current() -> None:
    """docs/reference.md is made from the command table: a new call, argument or
    docstring without `python -m guestslots.commands > docs/reference.md` fails here."""
    from pathlib import Path

    from guestslots.commands import reference

    path = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
    assert path.read_text() == reference(), "stale: python -m guestslots.commands > " \
        "docs/reference.md"
