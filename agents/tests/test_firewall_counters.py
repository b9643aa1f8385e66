"""anycast-firewall-counters: the host firewall's nftables counters become Prometheus counters by reason;
a table that is not loaded, and a guard that fired, are said so."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import time

import pytest

from anycast_agents import firewall_counters

NFT_JSON = json.dumps({"nftables": [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"counter": {"family": "inet", "name": "dropped_bgp", "table": "anycast_firewall", "handle": 3,
                 "packets": 12, "bytes": 720}},
    {"counter": {"family": "inet", "name": "dropped_other", "table": "anycast_firewall", "handle": 4,
                 "packets": 3, "bytes": 180}},
    # another table's counter, and a counter of ours that is not a drop: both ignored
    {"counter": {"family": "inet", "name": "dropped_bgp", "table": "somebody_else", "handle": 1,
                 "packets": 99, "bytes": 99}},
    {"counter": {"family": "inet", "name": "accepted_dns", "table": "anycast_firewall", "handle": 5,
                 "packets": 7, "bytes": 7}},
]})


def fake_nft(tmp_path, body: str) -> str:
    path = tmp_path / "nft"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_parse_keeps_the_drop_counters_of_the_table_only():
    assert firewall_counters.parse(NFT_JSON, "anycast_firewall") == {"bgp": (12, 720), "other": (3, 180)}


def test_textfile_has_drops_by_reason_and_says_the_table_is_loaded(tmp_path):
    nft = fake_nft(tmp_path, f"cat <<'JSON'\n{NFT_JSON}\nJSON\n")
    out = tmp_path / "fw.prom"
    assert firewall_counters.main(["--nft", nft, "--textfile", str(out),
                                   "--rollback-mark", str(tmp_path / "absent")]) == 0
    text = out.read_text()
    assert 'anycast_firewall_dropped_packets_total{reason="bgp"} 12.0' in text
    assert 'anycast_firewall_dropped_bytes_total{reason="other"} 180.0' in text
    assert "anycast_firewall_loaded 1.0" in text and "anycast_firewall_rolled_back 0.0" in text
    assert "accepted_dns" not in text and "99" not in text


def test_a_table_not_loaded_and_a_guard_that_fired_are_reported(tmp_path):
    nft = fake_nft(tmp_path, "echo 'Error: No such file or directory' >&2; exit 1\n")
    mark = tmp_path / "rolled-back"
    mark.write_text("")
    out = tmp_path / "fw.prom"
    assert firewall_counters.main(["--nft", nft, "--textfile", str(out), "--rollback-mark", str(mark)]) == 0
    text = out.read_text()
    assert "anycast_firewall_loaded 0.0" in text and "anycast_firewall_rolled_back 1.0" in text
    assert "dropped_packets" not in text
    assert firewall_counters.main(["--nft", nft, "--json", "--rollback-mark", str(mark)]) == 1


def test_every_keeps_the_textfile_current_until_sigterm(tmp_path):
    """--every (the role's service): one process writes the textfile at once and again each round
    with what nft says then, and ends cleanly (exit 0) on SIGTERM."""
    packets = tmp_path / "packets"
    packets.write_text("12")
    counter = ('{"counter": {"family": "inet", "name": "dropped_bgp", "table": "anycast_firewall", '
               '"handle": 3, "packets": %s, "bytes": 720}}')
    nft = fake_nft(tmp_path, f"printf '{{\"nftables\": [{counter}]}}' \"$(cat {packets})\"\n")
    out = tmp_path / "fw.prom"
    src = pathlib.Path(firewall_counters.__file__).parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from anycast_agents.firewall_counters import main; sys.exit(main())",
         "--nft", nft, "--textfile", str(out), "--rollback-mark", str(tmp_path / "absent"), "--every", "0.2"],
        env=dict(os.environ, PYTHONPATH=str(src)), stderr=subprocess.PIPE, text=True)
    try:
        def shows(n: int) -> bool:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if out.exists() and f'anycast_firewall_dropped_packets_total{{reason="bgp"}} {n}.0' in out.read_text():
                    return True
                time.sleep(0.05)
            return False

        assert shows(12)
        packets.write_text("20")  # the next round reads it
        assert shows(20)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_every_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        firewall_counters.main(["--every", "0", "--textfile", str(tmp_path / "fw.prom")])
    assert exc.value.code == 2
    assert "--every 0.0: must be more than 0 seconds" in capsys.readouterr().err
