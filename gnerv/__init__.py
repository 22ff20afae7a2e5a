"""GNeRV: Global embedding Neural Representation for Videos, as a practical codec."""

from gnerv.heap import keep_freed_memory
from gnerv.threads import prepare_environment

prepare_environment()  # before anything imports torch: see gnerv/threads.py
keep_freed_memory()  # large CPU buffers reused, not unmapped: see gnerv/heap.py

__version__ = "0.1.0"
