"""Text handed from the model's thread to the event loop: complete, ordered, batched, prompt at the end."""

from __future__ import annotations

import asyncio
import threading
import time

from agents.local import _Handover


async def collect(
    interval_s: float, items: list[str], gap_s: float
) -> tuple[list[list[str]], float]:
    box = _Handover(asyncio.get_running_loop())

    def produce() -> None:
        for item in items:
            box.put(item)
            time.sleep(gap_s)
        box.close()

    thread = threading.Thread(target=produce)
    batches: list[list[str]] = []
    thread.start()
    async for batch in box.batches(interval_s):
        batches.append(batch)
    finished = time.perf_counter()
    thread.join()
    return batches, finished


async def test_everything_arrives_in_order_in_fewer_batches() -> None:
    """Three bursts of 20 items, 100 ms apart, with a 30 ms interval: each burst arrives in a
    batch or two (its first item at once, the rest together), never item by item. A slower
    machine only spaces the bursts further."""
    box = _Handover(asyncio.get_running_loop())
    items = [f"t{i}" for i in range(60)]

    def produce() -> None:
        for burst in range(3):
            for item in items[burst * 20 : (burst + 1) * 20]:
                box.put(item)
            time.sleep(0.1)
        box.close()

    thread = threading.Thread(target=produce)
    thread.start()
    batches = [batch async for batch in box.batches(0.03)]
    thread.join()
    assert [i for b in batches for i in b] == items
    assert len(batches) <= 9


async def test_the_first_item_is_not_held_back_by_the_interval() -> None:
    """With a 5 s interval, the first item still arrives at once: the producer waits for it to be
    delivered before it sends the second (it would wait 5 s if the first were held back)."""
    box = _Handover(asyncio.get_running_loop())
    first_seen = threading.Event()
    waited: list[bool] = []

    def produce() -> None:
        box.put("first")
        waited.append(first_seen.wait(timeout=2.0))
        box.put("second")
        box.close()

    thread = threading.Thread(target=produce)
    thread.start()
    started = time.perf_counter()
    batches: list[list[str]] = []
    async for batch in box.batches(5.0):
        batches.append(batch)
        first_seen.set()
    thread.join()
    assert waited == [True], "the first item was held back"
    assert batches[0] == ["first"]
    assert [i for b in batches for i in b] == ["first", "second"]
    assert time.perf_counter() - started < 2.0


async def test_without_an_interval_items_flow_as_they_come() -> None:
    """Each item is put only once the one before it was delivered: without an interval, every
    one arrives on its own, none waits for company."""
    box = _Handover(asyncio.get_running_loop())
    delivered = threading.Semaphore(0)
    waited: list[bool] = []

    def produce() -> None:
        for i in range(10):
            box.put(f"t{i}")
            waited.append(delivered.acquire(timeout=2.0))
        box.close()

    thread = threading.Thread(target=produce)
    thread.start()
    batches: list[list[str]] = []
    async for batch in box.batches(0.0):
        batches.append(batch)
        delivered.release()
    thread.join()
    assert all(waited), "an item was held back"
    assert batches == [[f"t{i}"] for i in range(10)]


async def test_the_end_is_not_held_back_by_the_interval() -> None:
    started = time.perf_counter()
    batches, finished = await collect(5.0, ["a", "b"], gap_s=0.0)
    assert [i for b in batches for i in b] == ["a", "b"]
    assert finished - started < 1.0
