"""GNeRV: Global embedding Neural Representation for Videos, as a practical codec.

Importing the package (or any module of it) changes nothing in the process: the commands that
train or decode apply the thread and allocator settings they need (gnerv.runtime.process).
docs/package.md maps the rooms below.
"""

__version__ = "0.1.0"
