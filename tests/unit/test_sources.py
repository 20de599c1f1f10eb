"""Remote sources: URL parsing, what messages show, QEMU's options and libvirt's XML."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from guestslots.backends.libvirt.domxml import disk_xml, domain_xml
from guestslots.backends.qemu.qmpargs import blockdev_add_args, slot_ids
from guestslots.errors import DriveError
from guestslots.host.sources import make_drive
from guestslots.model.drives import DriveSpec, qcow2_size
from guestslots.model.sources import Remote, SourceError, is_url, parse, shown

OWNER = "9f2c41d7"


@pytest.mark.parametrize(("url", "expected"), [
    ("nbd://example.org/disk", Remote("nbd://example.org/disk", "nbd", host="example.org",
                                      port=10809, export="disk")),
    ("nbd://[::1]:10810", Remote("nbd://[::1]:10810", "nbd", host="::1", port=10810)),
    ("nbd+unix:///ex%20port?socket=/run/n.sock",
     Remote("nbd+unix:///ex%20port?socket=/run/n.sock", "nbd", socket="/run/n.sock",
            export="ex port")),
    ("nbds://h/e?tls-certificates=/etc/pki/q",
     Remote("nbds://h/e?tls-certificates=/etc/pki/q", "nbd", host="h", port=10809,
            export="e", tls=True, tls_certificates="/etc/pki/q")),
    ("http://h:8080/a/b.img?x=1", Remote("http://h:8080/a/b.img?x=1", "http", host="h",
                                          port=8080)),
    ("https://h/b.qcow2", Remote("https://h/b.qcow2", "https", host="h", port=443)),
    ("ssh://me@h:2222/var/b.img", Remote("ssh://me@h:2222/var/b.img", "ssh", host="h",
                                         port=2222, path="/var/b.img", user="me")),
])
def test_source_urls_parse_as_the_nbd_uri_standard_and_qemu_say(url: str,
                                                                expected: Remote) -> None:
    assert is_url(url)
    assert parse(url) == expected


@pytest.mark.parametrize(("url", "said"), [
    ("ftp://h/x", "unknown scheme 'ftp'"),
    ("https://me:hunter2@h/x", "a password in the URL is refused"),
    ("ssh://me:hunter2@h/x", "a password in the URL is refused"),
    ("http://me@h/x", "a user name in an http(s):// URL is refused"),
    ("nbd+unix:///e", "needs ?socket=/absolute/path"),
    ("nbd+unix://host/e?socket=/s", "takes no host"),
    ("nbd://h/e?socket=/s", "?socket= is for nbd+unix://"),
    ("nbd://h/e?foo=1", "unknown NBD URL parameter(s) foo"),
    ("nbd://h/e?tls-certificates=/d", "tls-certificates= is for nbds://"),
    ("nbd:///e", "needs a host"),
    ("ssh://h/", "needs the image's path"),
    ("http://h/x#frag", "#fragment"),
    ("nbd://h:99999/e", "not a valid URL"),
])
def test_bad_source_urls_are_refused_without_repeating_them(url: str, said: str) -> None:
    with pytest.raises(SourceError) as raised:
        parse(url)
    assert said in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_sslverify_false_is_for_https_only() -> None:
    assert parse("https://h/x", sslverify=False).sslverify is False
    with pytest.raises(SourceError, match="https:// sources only"):
        parse("http://h/x", sslverify=False)


def test_paths_are_not_urls() -> None:
    for path in ("/tmp/a.img", "a.img", "./nbd:x", "/dev/null", "c:/x"):
        assert not is_url(path)


def test_messages_show_no_password_and_no_http_query() -> None:
    assert shown("https://me:hunter2@h/x.img?X-Amz-Signature=abc") == "https://me@h/x.img?..."
    assert shown("nbd+unix:///e?socket=/s") == "nbd+unix:///e?socket=/s"
    assert shown("/tmp/a.img") == "/tmp/a.img"
    assert "hunter2" not in str(DriveError("https://me:hunter2@h/x?tok=1", "no"))
    assert "tok=1" not in str(DriveError("https://h/x?tok=1", "no"))


def test_a_writable_http_slot_and_a_bad_format_are_refused_before_anything_is_opened() -> None:
    with pytest.raises(DriveError, match="read-only: add it read-only"):
        make_drive("http://127.0.0.1:9/x.img", readonly=False)
    with pytest.raises(DriveError, match="format 'vmdk' is not supported"):
        make_drive("nbd://127.0.0.1:9/x", format="vmdk")
    with pytest.raises(DriveError, match="https:// sources only"):
        make_drive("/dev/null", sslverify=False)


def test_qemu_opens_each_protocol_with_its_own_driver() -> None:
    nbd = parse("nbd+unix:///e?socket=/s").qemu_options("n", True)
    assert nbd == {"driver": "nbd", "server": {"type": "unix", "path": "/s"}, "export": "e",
                   "node-name": "n", "read-only": True}
    tcp = parse("nbds://h:1/e?tls-certificates=/c").qemu_options(None, False, "t0")
    assert tcp["server"] == {"type": "inet", "host": "h", "port": "1"}
    assert (tcp["tls-creds"], tcp["tls-hostname"], tcp["read-only"]) == ("t0", "h", False)
    assert parse("nbds://h/e?tls-certificates=/c").tls_object("t0") == {
        "qom-type": "tls-creds-x509", "id": "t0", "endpoint": "client", "dir": "/c",
        "verify-peer": True}
    https = parse("https://h/x?t=1", sslverify=False).qemu_options()
    assert https == {"driver": "https", "url": "https://h/x?t=1", "sslverify": False,
                     "read-only": True}
    ssh = parse("ssh://me@h/x.img").qemu_options()
    assert ssh == {"driver": "ssh", "server": {"host": "h", "port": "22"}, "path": "/x.img",
                   "user": "me", "host-key-check": {"mode": "known_hosts"}, "read-only": True}


def remote_drive(url: str, **kw: object) -> DriveSpec:
    return DriveSpec(url, remote=parse(url), size=1 << 20, **kw)  # type: ignore[arg-type]


def test_a_remote_slot_is_the_protocol_node_under_the_format_node() -> None:
    drive = remote_drive("nbds://h/e?tls-certificates=/c", readonly=False)
    args = blockdev_add_args(3, drive, owner=OWNER)
    ids = slot_ids(3, OWNER)
    assert args["file"]["driver"] == "nbd" and args["file"]["node-name"] == ids.file_node
    assert args["file"]["tls-creds"] == ids.tls
    over = blockdev_add_args(3, remote_drive("http://h/x.img"), "/w/ov.qcow2", owner=OWNER)
    assert over["backing"]["file"] == {"driver": "http", "url": "http://h/x.img",
                                       "node-name": ids.base_file_node, "read-only": True}


SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")


@pytest.mark.skipif(not SCHEMA.exists(), reason="libvirt's schemas are not installed")
def test_libvirts_schema_accepts_network_disks() -> None:
    from .test_domxml import CFG

    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    disks = [disk_xml(0, remote_drive("nbd+unix:///e?socket=/s"), owner=OWNER),
             disk_xml(1, remote_drive("nbd://h:1/e", readonly=False), owner=OWNER),
             disk_xml(2, remote_drive("https://h/x.img?t=1", label="web"), "/w/ov.qcow2",
                      owner=OWNER),
             disk_xml(3, DriveSpec("https://h/x.img", remote=parse("https://h/x.img",
                                                                    sslverify=False)),
                      owner=OWNER)]
    document = etree.fromstring(domain_xml(CFG).replace("</devices>", "".join(disks)
                                                        + "</devices>").encode())
    assert schema.validate(document), schema.error_log
    nbd = etree.fromstring(disks[0].encode())
    assert nbd.get("type") == "network"
    assert nbd.xpath("string(source/@protocol)") == "nbd"
    assert [dict(h.attrib) for h in nbd.iterfind("source/host")] == [
        {"transport": "unix", "socket": "/s"}]
    web = etree.fromstring(disks[2].encode())
    assert web.xpath("string(backingStore/@type)") == "network"
    assert [dict(s.attrib) for s in web.iterfind("backingStore/source")] == [
        {"protocol": "https", "name": "/x.img", "query": "t=1"}]
    assert etree.fromstring(disks[3].encode()).xpath("string(source/ssl/@verify)") == "no"


def test_a_qcow2_header_gives_the_virtual_size() -> None:
    head = bytearray(512)
    head[:4] = b"QFI\xfb"
    head[24:32] = (5 << 30).to_bytes(8, "big")
    assert qcow2_size(bytes(head)) == 5 << 30
    assert qcow2_size(b"QFI") is None


def test_an_ssh_url_takes_qemus_host_key_check() -> None:
    fingerprint = "AB:" * 31 + "cd"
    remote = parse(f"ssh://h/x.img?host_key_check=sha256:{fingerprint}")
    assert remote.host_key == "sha256:" + "ab" * 31 + "cd"
    assert remote.qemu_options()["host-key-check"] == {
        "mode": "hash", "type": "sha256", "hash": "ab" * 31 + "cd"}
    assert parse("ssh://h/x?host_key_check=no").qemu_options()["host-key-check"] == {
        "mode": "none"}
    for bad in ("host_key_check=sha256:abc", "host_key_check=maybe", "user=x",
                "host_key_check=no&host_key_check=yes"):
        with pytest.raises(SourceError):
            parse(f"ssh://h/x?{bad}")


def test_libvirt_refuses_what_its_network_disk_cannot_say() -> None:
    from guestslots.backends.libvirt.devices import remote_refused

    assert "nbds://" in remote_refused(remote_drive("nbds://h/e?tls-certificates=/c"))
    assert "ssh://" in remote_refused(remote_drive("ssh://me@h/x.img"))
    assert "ssh://" in remote_refused(remote_drive("ssh://h/x.img?host_key_check=no"))
    assert remote_refused(remote_drive("ssh://h/x.img")) == ""
    assert remote_refused(remote_drive("nbd://h/e")) == ""


def test_a_domains_qemu_user_is_its_dac_label() -> None:
    from guestslots.domains import backup_xml, dac_owner, disks_of

    live = """<domain><seclabel type='dynamic' model='dac' relabel='yes'>
      <label>+64055:+108</label><imagelabel>+64055:+108</imagelabel></seclabel>
      <devices><disk type='file' device='disk'><driver type='qcow2'/>
      <source file='/v/a.qcow2'/><target dev='vda'/></disk>
      <disk type='file' device='cdrom'><target dev='sda'/></disk>
      <disk type='network' device='disk'><source protocol='nbd'/><target dev='vdb'/>
      <readonly/></disk></devices></domain>"""
    assert dac_owner(live) == (64055, 108)
    assert dac_owner("<domain/>") is None
    assert [(d.target, d.source, d.format, d.type, d.readonly) for d in disks_of(live)] == [
        ("vda", "/v/a.qcow2", "qcow2", "file", False), ("vdb", "", "raw", "network", True)]
    backup = etree.fromstring(backup_xml(["vda"], ["vdb"], "/j/nbd.sock", "/j").encode())
    assert backup.get("mode") == "pull"
    assert dict(backup.find("server").attrib) == {"transport": "unix",  # type: ignore[union-attr]
                                                  "socket": "/j/nbd.sock"}
    assert [(d.get("name"), d.get("backup")) for d in backup.iterfind("disks/disk")] == [
        ("vda", "yes"), ("vdb", "no")]
    assert backup.xpath("string(disks/disk[@name='vda']/scratch/@file)") == "/j/vda.scratch"
