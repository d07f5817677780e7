"""Taking bytes off the front of a queue of chunks: the one way request bodies are read.

Rule: imports nothing of the package, no asyncio, no threads. The HTTP layer, the ASGI
bridge and the daemon process each keep their body as a ``deque`` of chunks plus a count
of the bytes in it, under whatever lock they need; this cuts what a read takes from it.
"""

from __future__ import annotations

from collections import deque


def take(chunks: deque[bytes], size: int, buffered: int) -> bytes:
    """Remove and return up to ``size`` bytes from the front of ``chunks`` (every byte when
    ``size`` < 0 or at least ``buffered``, the number of bytes ``chunks`` holds). Whole
    chunks are handed on without copying; only a chunk cut in two is copied."""
    if size < 0 or size >= buffered:
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        return data
    first = chunks[0]
    if len(first) <= size:
        return chunks.popleft()
    chunks[0] = first[size:]
    return first[:size]
