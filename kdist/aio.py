"""asyncio helpers kdist needs where the standard ones fall short; imports nothing of kdist."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """`asyncio.wait_for`, except that a cancellation of the caller is never lost.

    On Python 3.11, asyncio.wait_for returns the inner result when the inner awaitable finishes
    in the same loop iteration as the caller is cancelled, and the cancellation is gone
    (CPython gh-86296, fixed in 3.12): a Ctrl-C that lands as a short remote command ends was
    swallowed, and the build started next ran to its end. Here the caller's CancelledError
    always propagates (the inner one is cancelled and awaited first); a timeout cancels the
    inner awaitable and raises asyncio.TimeoutError, as asyncio.wait_for does.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        with contextlib.suppress(BaseException):  # its outcome no longer matters: we stop
            await task
        raise
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise asyncio.TimeoutError
    return task.result()
