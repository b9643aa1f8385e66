"""anycast.dns.anycast_probe against the fake authority, which names itself through NSID."""

from __future__ import annotations

import pytest

from ansible_collections.anycast.dns.plugins.modules import anycast_probe
from ansible_collections.anycast.dns.tests.unit.plugins.modules.dns_fakes import FakeAuthority, no_command


@pytest.fixture
def authority():
    server = FakeAuthority({"example.com": 100})
    server.nsid = "fra1"
    yield server
    server.close()


def args(server, **extra):
    return {"addresses": ["127.0.0.1"], "zone": "example.com", "port": server.port, "interval": 0.01, **extra}


def test_it_tells_which_server_answered(run_module, authority):
    result, failed = run_module(anycast_probe.main, args(authority), no_command)
    assert not failed, result
    assert result["answered_by"] == {"127.0.0.1": "fra1"} and result["serials"] == {"127.0.0.1": 100}
    assert result["queries"] == 1


def test_it_waits_for_the_expected_server_a_few_answers_in_a_row(run_module, authority):
    result, failed = run_module(anycast_probe.main, args(authority, expect_nsid=["hkg1", "fra1"], count=3),
                                no_command)
    assert not failed and result["queries"] == 3, result


def test_another_server_answering_fails_after_the_timeout_saying_who_answered(run_module, authority):
    authority.nsid = "tyo1"
    result, failed = run_module(anycast_probe.main, args(authority, expect_nsid=["fra1"], timeout=0.3), no_command)
    assert failed
    assert "not answered by fra1" in result["msg"] and "127.0.0.1 answered by tyo1" in result["msg"]
    assert result["queries"] > 1


def test_a_servfail_is_no_answer(run_module, authority):
    import dns.rcode  # noqa: PLC0415

    authority.rcode["example.com"] = dns.rcode.SERVFAIL
    result, failed = run_module(anycast_probe.main, args(authority), no_command)
    assert failed and "127.0.0.1: answered SERVFAIL (from fra1)" in result["msg"], result
