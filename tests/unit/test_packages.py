"""Package databases: dpkg, apk, pacman."""

from __future__ import annotations

from guestslots.inspection.packages import (
    Application,
    parse_apk_installed,
    parse_dpkg_status,
    parse_pacman_desc,
)

DPKG = """Package: zlib1g
Status: install ok installed
Architecture: amd64
Version: 1:1.2.13.dfsg-1
Description: compression library
 a continuation line: Version: 9

Package: removed-one
Status: deinstall ok config-files
Version: 1.0-1

Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b2

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a
"""


def test_dpkg_installed_packages_with_epoch_version_release() -> None:
    assert parse_dpkg_status(DPKG) == [
        Application("bash", "5.2.15", "2+b2", 0, "amd64"),
        Application("tzdata", "2024a", "", 0, "all"),
        Application("zlib1g", "1.2.13.dfsg", "1", 1, "amd64", "compression library",
                    "a continuation line: Version: 9"),
    ]


def test_dpkg_status_with_the_word_installed_as_libguestfs_reads_it() -> None:
    """libguestfs's phony Debian writes 'installed ok'; a package dpkg has not installed
    (which libguestfs counts, as its test is a substring) stays out."""
    text = ("Package: phony\nStatus: installed ok\nArchitecture: amd64\nVersion: 1.2.3-1\n\n"
            "Package: purged\nStatus: purge ok not-installed\nVersion: 2.0-1\n")
    assert parse_dpkg_status(text) == [Application("phony", "1.2.3", "1", 0, "amd64")]


def test_apk() -> None:
    text = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nC:Q1def=\nP:busybox\nV:1.36.1-r5\nA:x86_64\n"
    assert parse_apk_installed(text) == [
        Application("busybox", "1.36.1", "r5", 0, "x86_64"),
        Application("musl", "1.2.4", "r2", 0, "x86_64"),
    ]


def test_pacman() -> None:
    desc = "%NAME%\nlinux\n\n%VERSION%\n1:6.6.1.arch1-1\n\n%ARCH%\nx86_64\n"
    assert parse_pacman_desc(desc) == Application("linux", "6.6.1.arch1", "1", 1, "x86_64")
    assert parse_pacman_desc("%VERSION%\n1\n") is None


def test_rpm_answer_sorted_by_name_one_names_packages_last_first() -> None:
    """libguestfs collects librpm's headers front first and sorts them stably by name."""
    import json

    from guestslots.inspection.packages import parse_rpm_lines

    def line(name: str, arch: str, epoch: int = 0) -> str:
        return json.dumps({"name": name, "epoch": epoch, "version": "1", "release": "2",
                           "arch": arch, "url": "(none)", "summary": "s", "description": "d"})

    text = "\n".join([line("zlib", "x86_64"), line("glibc", "i686"), line("glibc", "x86_64", 2),
                      ""])
    assert [(a.name, a.arch, a.epoch, a.url) for a in parse_rpm_lines(text)] == [
        ("glibc", "x86_64", 2, "(none)"), ("glibc", "i686", 0, "(none)"),
        ("zlib", "x86_64", 0, "(none)")]
    assert parse_rpm_lines("") == []
