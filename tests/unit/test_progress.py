"""The progress a person sees: smoothed ETA, settled byte counts, a bar or plain lines."""

from __future__ import annotations

import io
import threading
import time

from archiver.progress import (
    ByteMeter,
    Console,
    RateMeter,
    TerminalProgress,
    columns,
    progress_interval,
)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_eta_follows_the_rate_of_the_last_seconds_not_the_whole_run() -> None:
    """The issue's case: nothing counted for seconds, then the bytes flow at 1 MB/s.
    A whole-run average would still promise hours; the smoothed rate is near 1 MB/s
    within a few time constants."""
    clock = _Clock()
    meter = RateMeter(tau=2.0, clock=clock)
    done = 0
    for _ in range(20):  # 5 s of a stall
        clock.now += 0.25
        meter.update(done)
    for _ in range(40):  # then 10 s at 1 MB/s
        clock.now += 0.25
        done += 250_000
        meter.update(done)
    assert 0.9e6 < meter.rate < 1.1e6
    eta = meter.eta(20_000_000 - done)
    assert eta is not None and 9 < eta < 12


def test_a_burst_moves_the_smoothed_rate_only_partly() -> None:
    clock = _Clock()
    meter = RateMeter(tau=5.0, clock=clock)
    done = 0
    for _ in range(40):
        clock.now += 0.25
        done += 25_000  # 100 kB/s
        meter.update(done)
    clock.now += 0.25
    done += 5_000_000  # one burst (a batch settled at once)
    meter.update(done)
    assert meter.rate < 1.2e6  # a raw sample would say 20 MB/s


def test_eta_unknown_without_a_rate() -> None:
    meter = RateMeter(clock=_Clock())
    assert meter.eta(1000) is None
    assert meter.eta(0) == 0.0


def test_byte_meter_reports_as_bytes_arrive_and_settles_to_the_sizes() -> None:
    progress = TerminalProgress()
    progress.add_total(2, 3000)
    meter = ByteMeter(progress)
    for _ in range(10):
        meter(100)  # a message arriving piece by piece
    assert progress.done_bytes == 1000
    meter.settle(1000 + 2000)  # the batch had one more message whose bytes were not metered
    assert progress.done_bytes == 3000 and meter.pending == 0
    meter(500)  # arrived from a message that then failed
    meter.settle(0)
    assert progress.done_bytes == 3000


def test_connections_reporting_at_once_lose_no_byte() -> None:
    progress = TerminalProgress()

    def feed() -> None:
        meter = ByteMeter(progress)
        for _ in range(20_000):
            meter(7)
        meter.settle(140_000)

    threads = [threading.Thread(target=feed) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert progress.done_bytes == 6 * 140_000


def test_off_a_terminal_a_plain_line_comes_every_interval() -> None:
    out = io.StringIO()
    progress = TerminalProgress(Console(out), "lines", interval=0.2)
    progress.add_total(10, 20_000_000)
    meter = ByteMeter(progress)
    deadline = time.monotonic() + 1.3
    while time.monotonic() < deadline:
        meter(50_000)
        time.sleep(0.01)
    progress.close()
    lines = [line for line in out.getvalue().splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 3, out.getvalue()
    assert " of 20.0 MB (" in lines[-1] and "0 of 10 messages" in lines[-1]
    assert "MB/s" in lines[-1] and "\r" not in out.getvalue()  # no bar drawing in a log


def test_quiet_prints_nothing_periodic() -> None:
    out = io.StringIO()
    progress = TerminalProgress(Console(out), "off", interval=0.05, quiet=True)
    progress.add_total(1, 1000)
    progress.transferred(10)
    progress.note("a note")
    time.sleep(0.2)
    progress.close()
    assert out.getvalue() == ""


def test_the_bar_counts_decimal_units_and_folder_lines_go_above_it() -> None:
    out = io.StringIO()
    progress = TerminalProgress(Console(out), "bar", folder_lines=True)
    progress.add_total(3, 20_500_000)
    progress.folder("送信済み", 3, 20_500_000)
    progress.transferred(4_000_000)
    bar = progress.render(120)
    assert "送信済み 0/3 msgs" in bar and "19%" in bar and "4.0 MB/20.5 MB" in bar
    assert "MiB" not in bar
    time.sleep(0.4)  # the ticker draws the bar
    progress.note("a note")
    progress.close()
    text = out.getvalue()
    assert "送信済み: 3 new messages (20.5 MB)\n" in text
    # a line above the bar first clears it, then the bar is drawn again
    assert "\r\x1b[Ka note\n" in text


def test_folder_lines_grammar() -> None:
    out = io.StringIO()
    progress = TerminalProgress(Console(out), "off", folder_lines=True, verbose=True)
    progress.folder("INBOX", 1, 512)
    progress.folder("Sent", 0, 0)
    progress.folder("Drafts", 2, 3400)
    assert out.getvalue() == ("INBOX: 1 new message (512 B)\nSent: nothing new\n"
                              "Drafts: 2 new messages (3.4 kB)\n")


def test_interval_from_the_environment() -> None:
    assert progress_interval({"ARCHIVER_PROGRESS_INTERVAL": "0.5"}) == 0.5
    assert progress_interval({"ARCHIVER_PROGRESS_INTERVAL": "junk"}) == 5.0
    assert progress_interval({}) == 5.0


def test_the_bar_fits_the_terminal_with_japanese_folder_names() -> None:
    progress = TerminalProgress()
    progress.add_total(1200, 2_000_000_000)
    progress.folder("受信箱/講義/2024年度/後期/情報科学演習", 1200, 2_000_000_000)
    progress.transferred(1_000_000_000)
    for width in (40, 60, 80, 120):
        bar = progress.render(width)
        assert columns(bar) <= width, (width, bar)
    assert "…" in progress.render(120) and "情報科学演習" in progress.render(120)


def test_no_eta_before_anything_is_known() -> None:
    assert "ETA --:--" in TerminalProgress().render(100)
