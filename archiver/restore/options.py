"""What a restore is asked to do (the CLI's options, as the library takes them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RestoreOptions:
    prefix: str = ""
    maps: tuple[tuple[str, str], ...] = ()
    special_use: bool = False
    include_deleted: bool = False
    dedup: bool = True
    dry_run: bool = False
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    max_reconnects: int = 5  # per connection
    backoff: float = 1.0
    writer: dict[str, Any] = field(default_factory=dict)  # AppendWriter tuning
    connections: int = 0  # target connections; 0: auto (archiver.connections.auto_count)
