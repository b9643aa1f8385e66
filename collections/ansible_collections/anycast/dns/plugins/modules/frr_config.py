#!/usr/bin/python
# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Install a whole FRR configuration, only once FRR itself has accepted it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: frr_config
short_description: Install a complete frr.conf only after FRR accepts it, and apply it without a restart
version_added: 0.2.0
description:
  - Owns the integrated FRR configuration file completely. The candidate O(content) is checked
    twice before anything changes, with FRR's own tools; C(vtysh --dryrun) parses every line,
    then C(frr-reload.py --test) works out the lines that would change in the running daemons.
  - A candidate FRR rejects fails the task with FRR's own message. The file and the running
    configuration stay as they were.
  - An accepted candidate replaces the file atomically and is applied with C(frr-reload.py --reload).
    If a daemon refuses a line while it is applied, the previous file is put back and reloaded,
    and the task fails with FRR's message.
  - Changed when the file differs or when the running configuration has drifted from it, for
    example after an edit made by hand in vtysh. Reported commands and diffs never show passwords.
options:
  content:
    description: The complete configuration, as FRR's integrated C(frr.conf).
    type: str
    required: true
  path:
    description: The configuration file FRR reads at start.
    type: path
    default: /etc/frr/frr.conf
  owner:
    description: Owner of O(path).
    type: str
    default: frr
  group:
    description: Group of O(path).
    type: str
    default: frr
  mode:
    description: Mode of O(path); it holds TCP-MD5 passwords.
    type: raw
    default: "0640"
  frr_reload:
    description:
      - Path of C(frr-reload.py) (package C(frr-pythontools)).
      - When not set, C(/usr/lib/frr/frr-reload.py) (Debian) or C(/usr/libexec/frr/frr-reload.py) (RHEL family).
    type: path
attributes:
  check_mode:
    support: full
    description:
      - The candidate is still checked by FRR and the lines that would change are returned.
      - Nothing is written or applied.
  diff_mode:
    support: full
    description: The file before and after, passwords masked.
requirements:
  - FRR with C(vtysh) and C(frr-pythontools), running, with C(service integrated-vtysh-config).
extends_documentation_fragment:
  - anycast.dns.attributes
author:
  - anycast.dns contributors (@anycast-dns)
"""

EXAMPLES = r"""
- name: Install frr.conf once FRR accepts it
  anycast.dns.frr_config:
    content: "{{ lookup('ansible.builtin.template', 'frr.conf.j2') }}"
  no_log: false
"""

RETURN = r"""
commands:
  description:
    - What frr-reload.py applied (or, in check mode, would apply), as FRR prints it, passwords masked.
    - Empty when the running configuration already matches the file.
  returned: always
  type: list
  elements: str
  sample: ["router bgp 65053", " neighbor 100.64.20.1 bfd profile upstream"]
pending:
  description: Lines FRR still reports as different after the reload (normally empty; FRR may omit defaults).
  returned: always
  type: list
  elements: str
  sample: []
"""

import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

RELOAD_CANDIDATES = ("/usr/lib/frr/frr-reload.py", "/usr/libexec/frr/frr-reload.py")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PASSWORD = re.compile(r"(\bpassword\s+)\S+")
SECTION_HEADERS = {"Lines To Delete", "Lines To Add", "===============", "============"}


def mask(text):
    return PASSWORD.sub(r"\1********", text)


def parse_test_output(stdout):
    """frr-reload.py --test output -> the configuration lines it would change (logs dropped)."""
    lines = []
    for line in stdout.splitlines():
        if not line.strip() or LOG_LINE.match(line) or line.strip() in SECTION_HEADERS:
            continue
        if line.startswith(("b'", 'b"')):  # continuation of a logged vtysh error
            continue
        lines.append(line.rstrip())
    return lines


def frr_errors(stdout, stderr):
    """FRR's own words for a rejection (vtysh's "line N: ..." and "% ..." lines), once each."""
    out = []
    text = ANSI.sub("", stderr + "\n" + stdout)
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(("b'", 'b"')):  # a vtysh error repeated inside a log record
            line = line[2:].rstrip("'\"").replace("\\n", " ").strip()
        if not line or LOG_LINE.match(line):
            continue
        if line.startswith(("line ", "%")) and mask(line) not in out:
            out.append(mask(line))
    return out or [mask(x) for x in text.strip().splitlines()[-10:]]


class Frr:
    def __init__(self, module):
        self.module = module
        self.reload_py = module.params["frr_reload"] or next(
            (p for p in RELOAD_CANDIDATES if os.path.exists(p)), None)
        if not self.reload_py or not os.path.exists(self.reload_py):
            module.fail_json(msg="frr-reload.py not found (install frr-pythontools, or set frr_reload)")
        self.vtysh = module.get_bin_path("vtysh", required=True)
        self.python = module.get_bin_path("python3", required=True)

    def run(self, args):
        return self.module.run_command(args, environ_update={"LANGUAGE": "C", "LC_ALL": "C"})

    def dryrun(self, path):
        return self.run([self.vtysh, "--dryrun", "--inputfile", path])

    def reload(self, path, test):
        return self.run([self.python, self.reload_py, "--test" if test else "--reload", "--stdout", path])


def write_temp(module, text):
    """TEXT in a new file of the module's temporary directory; returns its path."""
    fd, path = tempfile.mkstemp(prefix=".frr.conf.", dir=module.tmpdir)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def install(module, src, path):
    """Move SRC over PATH atomically, with the owner, group and mode FRR's file must have."""
    module.atomic_move(src, path)
    module.set_fs_attributes_if_different(
        {"path": path, "owner": module.params["owner"], "group": module.params["group"],
         "mode": module.params["mode"], "attributes": None, "seuser": None, "serole": None,
         "setype": None, "selevel": None, "secontext": None}, False)


def read(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def main():
    module = AnsibleModule(
        argument_spec={
            "content": {"type": "str", "required": True, "no_log": True},
            "path": {"type": "path", "default": "/etc/frr/frr.conf"},
            "owner": {"type": "str", "default": "frr"},
            "group": {"type": "str", "default": "frr"},
            "mode": {"type": "raw", "default": "0640"},
            "frr_reload": {"type": "path"},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    content = module.params["content"]
    if not content.endswith("\n"):
        content += "\n"
    frr = Frr(module)
    before = read(path)

    candidate = write_temp(module, content)
    rc, out, err = frr.dryrun(candidate)
    if rc != 0:
        module.fail_json(msg="FRR rejects the configuration (vtysh --dryrun); nothing was changed",
                         rc=rc, errors=frr_errors(out, err))
    rc, out, err = frr.reload(candidate, test=True)
    if rc != 0:
        module.fail_json(msg="FRR rejects the configuration (frr-reload.py --test); nothing was changed",
                         rc=rc, errors=frr_errors(out, err))
    commands = [mask(x) for x in parse_test_output(out)]
    file_changed = before != content
    result = {"changed": file_changed or bool(commands), "commands": commands, "pending": []}
    if module._diff:
        # Without the final newline: Ansible censors any string that contains a no_log value whole.
        result["diff"] = {"before": mask(before or "").rstrip("\n"), "after": mask(content).rstrip("\n"),
                          "before_header": path, "after_header": path}
    if not result["changed"] or module.check_mode:
        module.exit_json(**result)

    if file_changed:
        install(module, candidate, path)
    rc, out, err = frr.reload(path, test=False)
    if rc != 0:
        errors = frr_errors(out, err)
        if before is not None and file_changed:
            install(module, write_temp(module, before), path)
            frr.reload(path, test=False)
        module.fail_json(msg="FRR refused the configuration while applying it; the previous file was restored "
                             "and reloaded", rc=rc, errors=errors, **result)
    rc, out, _err = frr.reload(path, test=True)
    result["pending"] = [mask(x) for x in parse_test_output(out)] if rc == 0 else []
    if result["pending"]:
        module.warn("FRR still differs from %s after the reload: %s" % (path, "; ".join(result["pending"])))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
