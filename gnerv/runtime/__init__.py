"""The process: errors, atomic writes, sizes, device choice, thread and allocator settings.

The lowest room: it imports no other room of the package.
"""
