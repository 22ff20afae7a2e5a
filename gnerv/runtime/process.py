"""What a command that trains or decodes sets up in its process, explicitly, before torch loads.

Importing the package changes nothing; :func:`prepare_process` is called by the command line
(gnerv.cli) for the commands that compute, and by benchmarks that compare settings.
"""

from __future__ import annotations

from gnerv.runtime.heap import keep_freed_memory
from gnerv.runtime.threads import prepare_threads


def prepare_process(threads: bool = True, heap: bool = True) -> None:
    """OpenMP's waiting (threads; must run before torch is imported) and the kept heap."""
    if threads:
        prepare_threads()
    if heap:
        keep_freed_memory()
