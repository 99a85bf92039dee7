"""One unit system: decimal kB/MB/GB, never "0.0 MB" (archiver.units)."""

from __future__ import annotations

import pytest

from archiver.units import human_duration, human_rate, human_size


@pytest.mark.parametrize("nbytes, text", [
    (0, "0 B"),
    (512, "512 B"),
    (999, "999 B"),
    (1000, "1.0 kB"),
    (3400, "3.4 kB"),
    (99_949, "99.9 kB"),
    (123_456, "123 kB"),
    (999_960, "1.0 MB"),  # rounded first: not "1000 kB"
    (1_200_000, "1.2 MB"),
    (20_500_000, "20.5 MB"),
    (1_048_576, "1.0 MB"),  # one MiB is 1.05 MB: decimal, as the summaries say
    (4_700_000_000, "4.7 GB"),
])
def test_sizes_are_decimal_and_never_zero_point_zero(nbytes: int, text: str) -> None:
    assert human_size(nbytes) == text


def test_a_small_folder_is_bytes_or_kilobytes_not_zero_megabytes() -> None:
    for n in range(1, 50_000, 997):
        assert not human_size(n).startswith("0.0"), n


def test_rate_and_duration() -> None:
    assert human_rate(1_500_000) == "1.5 MB/s"
    assert human_duration(7) == "0:07"
    assert human_duration(754) == "12:34"
    assert human_duration(3723) == "1:02:03"
