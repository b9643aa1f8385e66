"""testinfra checks on every lab machine Ansible manages (molecule verify)."""

from __future__ import annotations


def test_machine_is_the_host_ansible_thinks_it_is(host):
    assert host.check_output("hostname") == host.backend.get_hostname()


def test_systemd_booted_and_healthy(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state


def test_sshd_and_network_manager_run(host):
    assert host.service("ssh").is_running
    assert host.service("NetworkManager").is_running


def test_python_for_ansible(host):
    assert host.exists("python3")
    assert host.run("python3 -c 'import apt'").rc == 0


def test_apt_goes_through_the_lab_cache(host):
    proxy = host.file("/etc/apt/apt.conf.d/01anycast-lab-proxy")
    assert proxy.contains("198.18.0.1:3142")
    assert host.run("apt-get -q -o Acquire::Retries=0 update").rc == 0
