"""Reading a request or response body chunk by chunk, as the network delivered it.

Public: :func:`next_chunk`.

aiohttp's ``StreamReader.readany()`` returns everything buffered, *joined* into one new bytes
object when more than one network read is waiting: a memmove of up to the whole buffer, ~8 % of
an object server's GIL time in 1 MiB PUTs. Code that only relays or writes the pieces (with one
``writev``, or one join of its own) has no use for that copy; :func:`next_chunk` hands out the
buffered pieces one by one instead.
"""

from __future__ import annotations

from aiohttp import StreamReader


async def next_chunk(content: StreamReader) -> bytes:
    """The next piece of the body as received (never joined with others); ``b""`` at its end.

    For a chunked body, ``readchunk()`` also reports the end of each HTTP chunk with an empty
    piece; those are skipped, since only the end of the body ends the iteration.
    """
    while True:
        chunk, _ = await content.readchunk()
        if chunk or content.at_eof():
            return chunk
