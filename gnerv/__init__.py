"""GNeRV: Global embedding Neural Representation for Videos, as a practical codec."""

from gnerv.threads import prepare_environment

prepare_environment()  # before anything imports torch: see gnerv/threads.py

__version__ = "0.1.0"
