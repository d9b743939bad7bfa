"""Output batching and bounding, piece by piece, in this process (no kernel, no workers).
End to end through a real kernel: the output tests in ``test_kernel.py``."""

from __future__ import annotations

import io
import random
import threading

from ipyworkers.kernel.sinks import LinePrefixer
from ipyworkers.notebook import outputs, whole_text
from ipyworkers.notebook.blocked import QueueSink
from ipyworkers.notebook.outputs import _carriage_returns, _Kept, _Prefixer, _Text
from ipyworkers.worker.output import FLUSH_CHARS, RECORD_CHARS, TaskStream


def stream(sent: list) -> TaskStream:
    return TaskStream("stdout", io.StringIO(), sent.append, lambda: 7)


def test_worker_output_goes_in_batches_of_whole_lines():
    sent: list = []
    out = stream(sent)
    for i in range(100_000):
        print("line", i, file=out)
    out.send_buffered()
    text = "".join(f"line {i}\n" for i in range(100_000))
    assert "".join(r.text for r in sent) == text
    assert len(sent) <= len(text) // FLUSH_CHARS + 2, "batched by size, not sent per line"
    assert all(r.text.endswith("\n") for r in sent) and {r.task for r in sent} == {7}


def test_user_flush_leaves_sending_to_the_flush_thread():
    sent: list = []
    out = stream(sent)
    print("tick", file=out, flush=True)
    assert sent == []
    out.send_buffered(wait=False)
    assert [r.text for r in sent] == ["tick\n"]


def test_a_huge_string_goes_out_as_bounded_records_in_order():
    sent: list = []
    out = stream(sent)
    out.write("a")
    out.write("x" * (5 * RECORD_CHARS + 3))
    out.write("\n")
    out.send_buffered()
    assert "".join(r.text for r in sent) == "a" + "x" * (5 * RECORD_CHARS + 3) + "\n"
    assert max(len(r.text) for r in sent) <= RECORD_CHARS


def test_the_flush_thread_does_not_wait_for_another_sender():
    sent: list = []
    out = stream(sent)
    out.write("pending")
    with out._sending:
        done = threading.Event()
        flusher = threading.Thread(target=lambda: (out.send_buffered(wait=False), done.set()))
        flusher.start()
        assert done.wait(2), "send_buffered(wait=False) must return while another thread sends"
        flusher.join()
    assert sent == []
    out.send_buffered()
    assert [r.text for r in sent] == ["pending"]


def test_the_cell_shows_a_bounded_tail_and_says_what_it_left_out():
    text = _Text()
    for start in range(0, 1000, 37):
        text.add("stdout", "".join(f"line {i}\n" for i in range(start, min(start + 37, 1000))))
    data, _ = text.bundle("ipyworkers.output(3)")
    shown = data["text/plain"]
    assert shown.startswith("… 800 lines not shown; all of it: ipyworkers.output(3)\n")
    assert shown.split("\n", 1)[1] == "".join(f"line {i}\n" for i in range(800, 1000))

    long_line = _Text()
    long_line.add("stdout", "y" * (outputs.TAIL_CHARS * 3))
    long_line.end_with("error", "Traceback: boom")
    shown = long_line.bundle("here")[0]["text/plain"]
    assert shown.startswith(f"… {outputs.TAIL_CHARS * 2:,} characters not shown; all of it: here\n")
    assert shown.endswith("y" * outputs.TAIL_CHARS + "\nTraceback: boom\n")


def test_stderr_is_styled_and_carriage_returns_rewrite_the_line():
    text = _Text()
    text.add("stdout", "progress 10%\rprogress 50%\rprogress 100%\n")
    text.add("stderr", "warning\n")
    assert text.bundle("")[0]["text/plain"] == "progress 100%\n\x1b[31mwarning\n\x1b[0m"
    assert _carriage_returns("a\r\nb\rc") == "a\nc"


def test_fast_prefixer_matches_the_line_prefixer_across_records():
    rng = random.Random(5)
    text = "".join(rng.choice(["ab", "c\n", "\n", "def"]) for _ in range(2000))
    cuts = sorted(rng.sample(range(1, len(text)), 50))
    records = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    fast, reference = _Prefixer(), LinePrefixer()
    assert "".join(fast(2, "stdout", r) for r in records) == "".join(reference(2, "stdout", r) for r in records)


def test_the_whole_text_spills_to_a_file_past_the_memory_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(whole_text, "KEEP_CHARS", 1000)
    kept = _Kept("cell3-worker1-stdout")
    pieces = [f"{i} é\n" * 50 for i in range(20)]
    for piece in pieces:
        kept.add(piece, str(tmp_path))
    assert kept.path is not None and kept.path.startswith(str(tmp_path))
    assert kept.chunks == []
    assert _Kept.read(kept.snapshot()) == "".join(pieces)
    kept.close()
    assert list(tmp_path.iterdir()) == []


def test_block_output_is_written_once_per_drain(capsys):
    sink = QueueSink()
    for i in range(1000):
        sink.stream(1, "stdout", f"line {i}\n")
    sink.stream(1, "stderr", "oops\n")
    sink.stream(1, "stdout", "after\n")
    sink.drain(final=True)
    sink.stream(1, "stdout", "later\n")
    sink.drain()
    captured = capsys.readouterr()
    assert captured.out == "".join(f"line {i}\n" for i in range(1000)) + "after\n"
    assert captured.err == "oops\n"
    sink.drain(final=True)
    assert capsys.readouterr().out == "later\n"
