"""Transparent huge pages for memory a native library allocates (Linux only).

A decode step reads every weight once: SmolLM2-135M's ~90 MiB of weights in 4 KiB pages is
~23k pages, far more than the CPU's TLB holds, so each step pays page walks that 2 MiB pages
(~45 of them) avoid. Where the kernel's THP mode is "madvise" (Debian's default), memory is
backed by huge pages only when asked before it is first touched. `HugePageAdvisor` notes the
process's anonymous mappings when made; `advise()` asks for huge pages on the large ones that
appeared since. Everything here is best effort: where it cannot help, it does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

HUGE_PAGE = 2 << 20
MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25  # Linux 6.1+; EINVAL before
MIN_REGION = 8 << 20
"""Mappings smaller than this are left alone (a few huge pages at most)."""

_THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
_MAPS = Path("/proc/self/maps")
_MEMINFO = Path("/proc/meminfo")


def _available() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mode = _THP_MODE.read_text()
    except OSError:
        return False
    return "[never]" not in mode


def _available_memory() -> int | None:
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def worth_reading(file_size: int) -> bool:
    """Whether to read `file_size` bytes of weights into huge pages rather than map the file:
    where the kernel has huge pages and the weights take at most half the free memory (a
    mapped file can be larger than memory and is shared between processes; a read copy is
    neither)."""
    if not _available():
        return False
    free = _available_memory()
    return free is not None and file_size <= free // 2


def _anonymous_mappings() -> set[tuple[int, int]]:
    """(start, end) of the process's private read-write mappings backed by no file."""
    found = set()
    try:
        lines = _MAPS.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) == 5 and fields[1] == "rw-p":
            start, end = (int(x, 16) for x in fields[0].split("-"))
            found.add((start, end))
    return found


def uncovered_parts(
    mappings: set[tuple[int, int]], known: set[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The parts of `mappings` outside every `known` one: a new allocation next to an old
    one merges with it into one mapping, and only the new part is the library's."""
    parts = []
    for start, end in sorted(mappings - known):
        cursor = start
        for old_start, old_end in sorted(known):
            if old_end <= cursor or old_start >= end:
                continue
            if old_start > cursor:
                parts.append((cursor, old_start))
            cursor = max(cursor, old_end)
        if cursor < end:
            parts.append((cursor, end))
    return parts


class HugePageAdvisor:
    """Asks for huge pages on the anonymous memory mapped between its creation and `advise()`
    (call it after the library allocated its buffers and before it fills them: pages it has
    already touched stay small until `collapse()`)."""

    def __init__(self) -> None:
        self.enabled = _available()
        self._before = _anonymous_mappings() if self.enabled else set()
        self._madvise = None
        if self.enabled:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            libc.madvise.restype = ctypes.c_int
            self._madvise = libc.madvise
        self._advised: list[tuple[int, int]] = []

    def advise(self) -> int:
        """Advises the large mappings that appeared since the last call, until one call
        found some (the library allocates its buffers at once; reading the process's
        mappings at every later call would cost more than the pages save); returns the
        bytes advised."""
        if self._madvise is None or self._advised:
            return 0
        advised = 0
        now = _anonymous_mappings()
        for start, end in uncovered_parts(now, self._before):
            # Only whole huge pages inside the mapping can be backed by one.
            first = -(-start // HUGE_PAGE) * HUGE_PAGE
            last = end // HUGE_PAGE * HUGE_PAGE
            if end - start >= MIN_REGION and last > first:
                if self._madvise(first, last - first, MADV_HUGEPAGE) == 0:
                    self._advised.append((first, last))
                    advised += last - first
        self._before = now
        return advised

    def collapse(self) -> int:
        """Moves what the advised ranges hold in small pages into huge pages (a copy, one huge
        page at a time: a range with untouched pages is refused whole); returns the bytes in
        huge pages afterwards (a page already huge counts)."""
        if self._madvise is None:
            return 0
        collapsed = 0
        for first, last in self._advised:
            for page in range(first, last, HUGE_PAGE):
                if self._madvise(page, HUGE_PAGE, MADV_COLLAPSE) == 0:
                    collapsed += HUGE_PAGE
        return collapsed
