"""Saves of a handler file, however an editor writes them and however fast they come.

One save starts one generation of workers; a storm of saves starts them one at a
time (a generation started for code that changed again is finished, then the next one
starts), so the workers stay few, the last code is served, and no request is lost.
"""

from __future__ import annotations

import asyncio
import os
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.nats.client import open_client
from tests.test_code_reload import CODE, Load, Served, served  # noqa: F401 (a fixture)


def in_place(path: Path, text: str) -> None:
    """`>>`: the same file, appended to."""
    with path.open("a") as file:
        file.write(text[len(path.read_text()):] if text.startswith(path.read_text()) else text)


def truncate_and_write(path: Path, text: str) -> None:
    """`>` and VS Code: the same file, emptied, then written."""
    with path.open("w") as file:
        file.write(text)


def by_rename(path: Path, text: str) -> None:
    """vim, PyCharm and most tools' "atomic save": a new file renamed over the old one."""
    new = path.with_suffix(".py.tmp")
    new.write_text(text)
    os.replace(new, path)


def code(version: int, slow: bool = False) -> str:
    return (SLOW_IMPORT if slow else "") + textwrap.dedent(CODE.format(version=version))


# Like a library that holds signals off while it starts: a worker importing this code
# does not end on SIGTERM until the import is done.
SLOW_IMPORT = """import signal, time
_before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(0.3)
signal.signal(signal.SIGTERM, _before)
"""


@pytest.mark.parametrize("save", [in_place, truncate_and_write, by_rename])
async def test_one_save_starts_one_generation(served: Served,  # noqa: F811
                                              save: Callable[[Path, str], None]) -> None:
    appended = code(1) + "\n# saved once\n"
    first = await served.after("reloaded:", lambda: save(served.code, appended))
    second = await served.after("reloaded:", lambda: save(served.code, code(2)))
    assert re.match(r"reloaded: generation 2: new code in ", first), first
    assert re.match(r"reloaded: generation 3: new code in ", second), served.up.log
    assert not [line for line in served.up.lines if "reload rejected" in line]


async def test_a_storm_of_saves_keeps_the_workers_few_serves_the_last_code_and_loses_nothing(
        served: Served) -> None:  # noqa: F811
    nc = await open_client(served.url)
    load = Load(nc, f"{served.prefix}.answer", clients=2)
    running = asyncio.create_task(load.run())
    most, seen = 0, set()
    try:
        while sum(load.versions.values()) < 20:  # the clients are under way
            await asyncio.sleep(0.01)
        for version in range(2, 102):  # 100 saves, one every 10 ms
            truncate_and_write(served.code, code(version, slow=True))
            pids = served.up.worker_pids()
            most, seen = max(most, len(pids)), seen | set(pids)
            await asyncio.sleep(0.01)
        for _ in range(6000):  # bounded: until both clients get answers of the last save
            if len(load.last) == load.clients and set(load.last.values()) == {101}:
                break
            pids = served.up.worker_pids()
            most, seen = max(most, len(pids)), seen | set(pids)
            await asyncio.sleep(0.01)
    finally:
        load.stop.set()
        await running
        await nc.close()
    assert set(load.last.values()) == {101}
    assert load.failures == []
    # serving, starting, the spare, and one generation finishing what it had
    assert most <= 5, most
    # Coalesced: every generation started was swapped in (none started only to be dropped):
    # the first worker and its spare, then one new spare for each generation.
    reloads = sum(line.startswith("reloaded:") for line in served.up.lines)
    assert reloads >= 1 and len(seen) <= reloads + 2, (len(seen), served.up.log)
    assert served.up.stop() == 0
