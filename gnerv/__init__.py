"""GNeRV: Global embedding Neural Representation for Videos, as a practical codec."""

__version__ = "0.1.0"
