"""The libguestfs facade's handle without an appliance: states, settings, events,
trace, errors, and its calls against libguestfs's own binding (where installed)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import guestslots.guestfs as guestfs
from guestslots.appliance import Appliance
from guestslots.guestfs.calls import BOOLEANS, HASHES, SAME, SETTINGS
from guestslots.guestfs.listing import BINDING, binding_functions, calls_table
from guestslots.guestfs.wire import quoted, shown_result


def handle() -> guestfs.GuestFS:
    return guestfs.GuestFS(environment=False, close_on_exit=False)


def test_event_names_are_libguestfs_s() -> None:
    assert guestfs.event_to_string(guestfs.EVENT_CLOSE | guestfs.EVENT_LAUNCH_DONE) == \
        "close,launch_done"
    assert guestfs.event_to_string(guestfs.EVENT_ALL) == (
        "appliance,close,enter,launch_done,library,libvirt_auth,progress,"
        "subprocess_quit,trace,warning")
    assert guestfs.EVENT_ALL == 0x3FF


def test_settings_read_back_as_libguestfs_gives_them() -> None:
    g = handle()
    assert g.get_memsize() == 1280 and g.get_smp() == 1 and g.get_autosync() == 1
    assert g.get_backend() == "direct" and g.get_backend_settings() == []
    g.set_memsize(600)
    g.set_verbose(True)
    g.set_backend_settings(["force_tcg"])
    assert (g.get_memsize(), g.get_verbose(), g.get_backend_settings()) == \
        (600, 1, ["force_tcg"])
    assert g.version()["major"] == 1 and g.version()["minor"] == 48
    assert "guestslots" in g.version()["extra"]
    g.parse_environment_list(["LIBGUESTFS_BACKEND=libvirt:qemu:///session",
                              "LIBGUESTFS_TRACE=1"])
    assert g.get_backend() == "libvirt:qemu:///session" and g.get_trace() == 1
    assert g._appliance_options()["backend"] == "libvirt"
    assert g._appliance_options()["uri"] == "qemu:///session"
    assert set(SETTINGS) >= {"verbose", "trace", "autosync", "memsize", "backend"}


def test_errors_states_and_a_closed_handle() -> None:
    g = handle()
    with pytest.raises(RuntimeError, match="^list_filesystems: call launch before using"):
        g.list_filesystems()
    with pytest.raises(RuntimeError, match="^/nonexistent.img: No such file or directory$"):
        g.add_drive_opts("/nonexistent.img", format="raw")
    with pytest.raises(RuntimeError, match="format must be ‘raw’"):  # noqa: RUF001
        g.add_drive_opts("/dev/null", format="qcow2")
    with pytest.raises(RuntimeError, match="secrets are not taken"):
        g.add_drive_opts("disk", protocol="nbd", server=["unix:/s"], secret="x")
    with pytest.raises(RuntimeError, match="^launch: you must call guestfs_add_drive"):
        g.launch()
    assert not hasattr(g, "mount_local")  # what is not answered is no attribute
    with pytest.raises(AttributeError, match="mount_local"):
        g.mount_local("/mnt")
    closed: list[tuple[int, int]] = []
    g.set_event_callback(lambda ev, h, buf, arr: closed.append((ev, h)), guestfs.EVENT_CLOSE)
    g.close()
    assert closed == [(guestfs.EVENT_CLOSE, 0)]
    with pytest.raises(guestfs.ClosedHandle, match="method called on closed handle"):
        g.get_memsize()
    with pytest.raises(guestfs.ClosedHandle):
        g.close()
    with pytest.raises(guestfs.ClosedHandle):  # before its own refusals
        g.add_drive_opts("disk", protocol="nbd", server=["unix:/s"], secret="x")
    assert closed == [(guestfs.EVENT_CLOSE, 0)]  # once


def test_trace_goes_to_a_callback_or_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    g = handle()
    g.set_trace(1)
    g.set_memsize(600)
    g.get_memsize()
    assert capsys.readouterr().err.splitlines() == [
        "libguestfs: trace: set_memsize 600", "libguestfs: trace: set_memsize = 0",
        "libguestfs: trace: get_memsize", "libguestfs: trace: get_memsize = 600"]
    seen: list[str] = []
    g.set_event_callback(lambda ev, h, buf, arr: seen.append(buf), guestfs.EVENT_TRACE)
    g.add_drive_opts("/dev/null", format="raw", readonly=True)
    assert seen == ['add_drive "/dev/null" "readonly:true" "format:raw"', "add_drive = 0"]
    assert capsys.readouterr().err == ""
    g.close()


def test_hashes_are_pairs_unless_asked_for_dicts() -> None:
    pairs = {"/dev/sda1": "ext4", "/dev/sda2": "swap"}
    assert handle()._maybe_convert_to_dict(pairs) == [("/dev/sda1", "ext4"),
                                                      ("/dev/sda2", "swap")]
    as_dict = guestfs.GuestFS(python_return_dict=True, environment=False, close_on_exit=False)
    assert as_dict._maybe_convert_to_dict(pairs) == pairs


def test_it_can_be_subclassed_as_imagefactory_does() -> None:
    class Mine(guestfs.GuestFS):
        def hello(self) -> str:
            return f"{self.get_program()}"

    assert Mine(environment=False, close_on_exit=False).hello()


def test_the_trace_shows_values_as_libguestfs_does() -> None:
    assert [quoted(v) for v in ("/dev/sda", 600, True, ["a", "b"])] == [
        '"/dev/sda"', "600", "true", '["a", "b"]']
    assert shown_result(None) == "0" and shown_result("x") == '"x"'
    assert shown_result(["a"]) == '["a"]'


@pytest.mark.skipif(not BINDING.exists(), reason="Debian's python3-guestfs is not installed")
def test_every_call_answered_is_libguestfs_s_with_its_arguments() -> None:
    """Each call the facade answers exists in libguestfs's binding, and guestslots'
    call of the same name takes its required arguments, in number."""
    theirs = binding_functions()
    ours = [n for n in dir(guestfs.GuestFS) if not n.startswith("_")]
    missing = [n for n in ours if n not in theirs]
    assert missing == []
    for name in (*SAME, *BOOLEANS, *HASHES):
        args = theirs[name].args
        required = len(args.args) - 1 - len(args.defaults)
        method = getattr(Appliance, name)
        params = [p for p in inspect.signature(method).parameters.values()
                  if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
        ours_required = [p for p in params if p.default is p.empty]
        assert len(ours_required) == required, (name, [a.arg for a in args.args])


@pytest.mark.skipif(not BINDING.exists(), reason="Debian's python3-guestfs is not installed")
def test_the_list_of_calls_in_docs_is_current() -> None:
    """docs/guestfs-calls.md is generated: a call added to the facade without
    ``python -m guestslots.guestfs --calls > docs/guestfs-calls.md`` fails here."""
    path = Path(__file__).resolve().parents[2] / "docs" / "guestfs-calls.md"
    assert path.read_text() == calls_table()


def test_a_name_that_is_not_utf8_raises_as_the_binding_does() -> None:
    """guestslots carries a guest's non-UTF-8 bytes as lone surrogates; the facade's
    result then raises UnicodeDecodeError, as libguestfs's binding (RHBZ#1406906)."""
    from guestslots.guestfs.handle import _check_utf8

    _check_utf8(["/lost+found", {"é": "ü"}])
    with pytest.raises(UnicodeDecodeError):
        _check_utf8(["/lost+found", "/\udcd4"])
    with pytest.raises(UnicodeDecodeError):
        _check_utf8({"k": ["\udcff"]})


def test_backend_settings_state_and_names_before_launch() -> None:
    g = handle()
    g.set_backend_setting("force_tcg", "1")
    g.set_backend_setting("force_tcg", "1")  # replaces, never doubles
    assert g.get_backend_settings() == ["force_tcg=1"]
    assert g.get_backend_setting("force_tcg") == "1"
    assert g._appliance_options()["accel"] == "tcg"
    with pytest.raises(RuntimeError, match="^get_backend_setting: setting not found"):
        g.get_backend_setting("nope")
    assert g.clear_backend_setting("force_tcg") == 1
    assert "accel" not in g._appliance_options()
    g.set_backend_settings(["force_tcg"])  # bare: 1
    assert g.get_backend_setting("force_tcg") == "1"
    assert (g.get_state(), g.is_config(), g.is_launching(), g.is_ready(), g.is_busy()) == \
        (0, 1, 0, 0, 0)
    assert g.get_hv() == g.get_qemu() == "/usr/bin/qemu-system-x86_64"
    g.set_qemu("/opt/qemu/bin/qemu-system-x86_64")
    assert g.get_hv() == "/opt/qemu/bin/qemu-system-x86_64"
    assert g._appliance_options()["qemu"] == "/opt/qemu/bin/qemu-system-x86_64"
    assert [g.canonical_device_name(d) for d in ("/dev/vda1", "/dev/hdb", "/dev/xvdc2",
                                                 "/dev/sda", "/dev/vg/lv")] == [
        "/dev/sda1", "/dev/sdb", "/dev/sdc2", "/dev/sda", "/dev/vg/lv"]
    with pytest.raises(RuntimeError, match="^get_pid: call launch before"):
        g.get_pid()
    g.close()


def test_where_an_os_keeps_its_logo_and_which_pngs_are_taken() -> None:
    from guestslots.guestfs import icons
    from guestslots.testing.testimages import png

    assert icons.candidates("linux", "debian", 12, True, False) == [
        ("/etc/favicon.png", 0), ("/usr/share/pixmaps/debian-logo.png", 2048)]
    assert icons.candidates("linux", "ubuntu", 22, True, True) == []  # low quality
    assert icons.candidates("linux", "centos", 6, False, False) == [
        ("/usr/share/pixmaps/redhat/shadowman-transparent.png", 102400)]
    assert icons.candidates("windows", "windows", 10, False, False) == []
    files = {"/etc/favicon.png": png(8, 8), "/usr/share/pixmaps/debian-logo.png": png(48, 48)}
    tries = icons.candidates("linux", "debian", 12, True, False)

    def found() -> bytes:
        return icons.find_icon(tries, files.__contains__, lambda p: len(files[p]),
                               lambda p, n: files[p][:n])
    assert icons.png_size(files["/etc/favicon.png"]) == (8, 8)
    assert found() == files["/usr/share/pixmaps/debian-logo.png"]  # 8 px: too small
    files["/usr/share/pixmaps/debian-logo.png"] = b"GIF89a" + bytes(64)
    assert found() == b""  # not a PNG
