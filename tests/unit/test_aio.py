"""kdist.aio.wait_for: asyncio.wait_for's contract, without losing the caller's cancellation."""

from __future__ import annotations

import asyncio

import pytest

from kdist.aio import wait_for


def test_a_cancel_in_the_same_iteration_as_the_inner_result_is_not_lost() -> None:
    """The inner result and the caller's cancel land together: the caller is still cancelled."""

    async def scenario() -> str:
        inner: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        caller = asyncio.ensure_future(wait_for(inner, 10))
        await asyncio.sleep(0)  # the caller now waits on inner
        inner.set_result(1)
        caller.cancel()  # Python 3.11's asyncio.wait_for returns 1 here and forgets this
        try:
            await caller
        except asyncio.CancelledError:
            return "cancelled"
        return "returned"

    assert asyncio.run(scenario()) == "cancelled"


def test_a_cancelled_caller_cancels_the_inner_awaitable() -> None:
    """Cancelling the caller stops what it waited for."""

    async def scenario() -> bool:
        started = asyncio.Event()

        async def forever() -> None:
            started.set()
            await asyncio.sleep(3600)

        inner = asyncio.ensure_future(forever())
        caller = asyncio.ensure_future(wait_for(inner, None))
        await started.wait()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        return inner.cancelled()

    assert asyncio.run(scenario())


def test_results_errors_and_timeouts_as_asyncio_wait_for() -> None:
    """A result comes back, an error is raised as is, a timeout cancels and raises TimeoutError."""

    async def scenario() -> None:
        async def value() -> int:
            return 7

        async def broken() -> int:
            raise ValueError("inner")

        assert await wait_for(value(), 1) == 7
        with pytest.raises(ValueError, match="inner"):
            await wait_for(broken(), 1)
        slow = asyncio.ensure_future(asyncio.sleep(3600))
        with pytest.raises(asyncio.TimeoutError):
            await wait_for(slow, 0.01)
        assert slow.cancelled()

    asyncio.run(scenario())


def test_the_standard_one_loses_that_cancel_here() -> None:
    """Why the helper exists: on this Python, asyncio.wait_for drops the cancel (3.12 keeps it)."""
    import sys

    async def scenario() -> str:
        inner: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        caller = asyncio.ensure_future(asyncio.wait_for(inner, 10))
        await asyncio.sleep(0)
        inner.set_result(1)
        caller.cancel()
        try:
            await caller
        except asyncio.CancelledError:
            return "cancelled"
        return "returned"

    expected = "returned" if sys.version_info < (3, 12) else "cancelled"
    assert asyncio.run(scenario()) == expected
