"""httpx, imported without its own command-line client.

``import httpx`` also imports the module behind httpx's ``httpx`` command
(click, rich's console and progress bars, pygments): 40 to 90 ms of every
start-up of ours, which never runs it — a tenth of a run that finds nothing
new. When that module can't be imported, httpx defines a stub ``httpx.main``
instead, so the module is hidden while httpx is first imported, and only
then: importing it explicitly later still works.
"""

from __future__ import annotations

import sys

_CLI_MODULE = "httpx._main"

if "httpx" not in sys.modules and _CLI_MODULE not in sys.modules:
    sys.modules[_CLI_MODULE] = None  # type: ignore[assignment]  # "can't be imported"
    try:
        import httpx  # noqa: F401
    finally:
        del sys.modules[_CLI_MODULE]
