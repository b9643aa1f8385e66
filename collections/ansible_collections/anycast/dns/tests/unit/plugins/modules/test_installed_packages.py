"""anycast.dns.installed_packages: dpkg's status file and rpm's list, in package_facts' format."""

from __future__ import annotations

from ansible_collections.anycast.dns.plugins.modules import installed_packages

STATUS = """\
Package: knot
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 3.4.6-1
Description: authoritative domain name server
 Knot DNS is a fast, authoritative only, high performance, feature
 full and open source name server.

Package: keepalived
Status: deinstall ok config-files
Architecture: amd64
Version: 1:2.3.3-1

Package: nginx
Status: install ok half-configured
Architecture: amd64
Version: 1.26.3-3

Package: libc6
Status: hold ok installed
Architecture: amd64
Version: 2.41-12
Multi-Arch: same

Package: libc6
Status: install ok installed
Architecture: i386
Version: 2.41-12
Multi-Arch: same
"""


def test_only_installed_packages_count_every_architecture_kept():
    packages = installed_packages.parse_dpkg_status(STATUS)
    assert sorted(packages) == ["knot", "libc6"]  # config-files and half-configured are not usable
    assert packages["knot"] == [{"name": "knot", "version": "3.4.6-1", "arch": "amd64", "source": "dpkg"}]
    assert [p["arch"] for p in packages["libc6"]] == ["amd64", "i386"]


def test_a_continuation_line_with_a_colon_is_not_a_field():
    text = "Package: frr\nStatus: install ok installed\nVersion: 10.3-1\nDescription: x\n Status: deinstall\n"
    assert installed_packages.parse_dpkg_status(text)["frr"][0]["version"] == "10.3-1"


def test_rpm_list_without_epoch_zero(run_module, monkeypatch, tmp_path):
    monkeypatch.setattr(installed_packages, "DPKG_STATUS", str(tmp_path / "absent"))
    calls = []

    def rpm(argv):
        calls.append(argv)
        return 0, "knot\t0:3.4.6-1.el9\tx86_64\nkeepalived\t1:2.2.8-3.el9\tx86_64\nbroken line\n", ""

    result, failed = run_module(installed_packages.main, {}, rpm)
    assert not failed and not result["changed"] and result["source"] == "rpm"
    assert calls[0][:2] == ["/usr/bin/rpm", "-qa"]
    assert result["ansible_facts"]["packages"] == {
        "knot": [{"name": "knot", "version": "3.4.6-1.el9", "arch": "x86_64", "source": "rpm"}],
        "keepalived": [{"name": "keepalived", "version": "1:2.2.8-3.el9", "arch": "x86_64", "source": "rpm"}]}


def test_reads_the_status_file_in_check_mode_too(run_module, monkeypatch, tmp_path):
    status = tmp_path / "status"
    status.write_text(STATUS)
    monkeypatch.setattr(installed_packages, "DPKG_STATUS", str(status))

    def no_rpm(argv):
        raise AssertionError(f"no command expected on a dpkg system: {argv}")

    result, failed = run_module(installed_packages.main, {}, no_rpm, check_mode=True)
    assert not failed and result["source"] == "dpkg"
    assert sorted(result["ansible_facts"]["packages"]) == ["knot", "libc6"]


def test_a_failing_rpm_is_reported(run_module, monkeypatch, tmp_path):
    monkeypatch.setattr(installed_packages, "DPKG_STATUS", str(tmp_path / "absent"))
    result, failed = run_module(installed_packages.main, {}, lambda argv: (1, "", "rpmdb: lock"))
    assert failed and result["msg"] == "rpm -qa failed" and result["stderr"] == "rpmdb: lock"
