# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attributes the collection's modules share."""

from __future__ import annotations


class ModuleDocFragment:
    # A module that runs on the managed node (the PoP servers, the hidden primary, a vantage point).
    DOCUMENTATION = r"""
attributes:
  platform:
    support: full
    platforms: posix
    description: Runs on the managed node; tested on Debian 12 with the roles of this collection.
"""

    # A module that only reads (queries, files, FRR's state) and never changes the node.
    READ_ONLY = r"""
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
    description: The module changes nothing, so there is nothing to diff.
"""
