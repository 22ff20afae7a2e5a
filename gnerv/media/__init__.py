"""Video in and out: extraction to frames, frame files, writing decoded frames."""
