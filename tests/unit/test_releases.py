"""Distribution detection from release files, against what libguestfs 1.48 answered for
images holding exactly these files (inspect_get_distro, _product_name, _major_version,
_minor_version, _package_format, _package_management, _osinfo; run here under TCG)."""

from __future__ import annotations

import pytest

from guestslots.inspection.releases import detect

DEBIAN_OS_RELEASE = ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
                     'VERSION_ID="12"\nVERSION="12 (bookworm)"\nID=debian\n')
LIBGUESTFS = [
    ({"/etc/os-release": DEBIAN_OS_RELEASE, "/etc/debian_version": "12.4\n"},
     ("debian", "12.4", 12, 4, "deb", "apt", "debian12")),
    ({"/etc/debian_version": "11.7\n"},
     ("debian", "11.7", 11, 7, "deb", "apt", "debian11")),
    ({"/etc/lsb-release": 'DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_CODENAME=jammy\n'
                          'DISTRIB_DESCRIPTION="Ubuntu 22.04.3 LTS"\n',
      "/etc/debian_version": "bookworm/sid\n"},
     ("ubuntu", "Ubuntu 22.04.3 LTS", 22, 4, "deb", "apt", "ubuntu22.04")),
    ({"/etc/redhat-release": "Red Hat Enterprise Linux Server release 7.9 (Maipo)\n"},
     ("rhel", "Red Hat Enterprise Linux Server release 7.9 (Maipo)", 7, 9, "rpm", "yum",
      "rhel7.9")),
    ({"/etc/redhat-release": "CentOS Linux release 7.9.2009 (Core)\n",
      "/etc/centos-release": "CentOS Linux release 7.9.2009 (Core)\n"},
     ("centos", "CentOS Linux release 7.9.2009 (Core)", 7, 9, "rpm", "yum", "centos7.0")),
    ({"/etc/redhat-release": "Fedora release 38 (Thirty Eight)\n"},
     ("fedora", "Fedora release 38 (Thirty Eight)", 38, 0, "rpm", "yum", "fedora38")),
    ({"/etc/alpine-release": "3.18.4\n"},
     ("alpinelinux", "3.18.4", 3, 18, "apk", "apk", "alpinelinux3.18")),
    ({"/etc/arch-release": ""},
     ("archlinux", "unknown", 0, 0, "pacman", "pacman", "archlinux")),
    ({"/etc/SuSE-release": "openSUSE 13.1 (x86_64)\nVERSION = 13.1\nCODENAME = Bottle\n"},
     ("opensuse", "openSUSE 13.1 (x86_64)", 13, 1, "rpm", "zypper", "opensuse13.1")),
    ({"/etc/os-release": 'NAME="Testix"\nVERSION_ID="4.2"\nID=testix\n'
                         'PRETTY_NAME="Testix 4.2 (Sardine)"\n'},
     ("unknown", "Testix 4.2 (Sardine)", 4, 2, "unknown", "unknown", "unknown")),
    ({}, ("unknown", "unknown", 0, 0, "unknown", "unknown", "unknown")),
]


@pytest.mark.parametrize(("files", "expected"), LIBGUESTFS)
def test_the_same_answers_as_libguestfs(files: dict[str, str],
                                        expected: tuple[object, ...]) -> None:
    r = detect(files)
    assert (r.distro, r.product_name, r.major, r.minor, r.package_format,
            r.package_management(has_dnf=False), r.osinfo) == expected


def test_dnf_where_it_is_used() -> None:
    fedora = detect({"/etc/redhat-release": "Fedora release 38 (Thirty Eight)\n"})
    assert fedora.package_management(has_dnf=True) == "dnf"
    rhel9 = detect({"/etc/redhat-release": "Red Hat Enterprise Linux release 9.2 (Plow)\n"})
    assert (rhel9.distro, rhel9.major, rhel9.minor) == ("rhel", 9, 2)
    assert rhel9.package_management(has_dnf=False) == "dnf"


def test_an_unknown_lsb_release_falls_through_to_the_next_file() -> None:
    r = detect({"/etc/lsb-release": "DISTRIB_ID=Whatever\nDISTRIB_RELEASE=1.0\n",
                "/etc/debian_version": "10.13\n"})
    assert (r.distro, r.product_name, r.major, r.minor) == ("debian", "10.13", 10, 13)


@pytest.mark.parametrize(("distro", "major", "minor", "expected"), [
    ("centos", 8, 5, "centos8"), ("centos", 6, 10, "centos6.10"), ("centos", 5, 11, "centos5.11"),
    ("rocky", 9, 2, "rocky9"), ("debian", 3, 1, "debian3.1"), ("sles", 15, 4, "sles15sp4"),
    ("sles", 12, 0, "sles12"), ("altlinux", 10, 1, "alt10.1"), ("coreos", 647, 0, "coreos647.0"),
    ("coreos", 0, 0, "unknown"), ("mageia", 9, 0, "mageia9"),
])
def test_osinfo_ids_by_libguestfs_rules(distro: str, major: int, minor: int,
                                        expected: str) -> None:
    from guestslots.inspection.releases import Release

    assert Release(distro, "x", major, minor).osinfo == expected
