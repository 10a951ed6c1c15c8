"""Segment files: hidden while written, renamed when complete, leftovers finished on start."""

from __future__ import annotations

import json

from closeconv.ingest import discover_landing_files
from closeconv.intake.segments import SegmentWriter, recover_parts


def test_a_segment_is_hidden_until_finished_and_the_pipeline_skips_it(tmp_path):
    w = SegmentWriter(tmp_path, "intake")
    w.append([b'{"event_id":"a"}\n', b'{"event_id":"b"}\n'])
    part = w.current_part
    assert part.name.startswith(".intake-") and part.name.endswith(".jsonl.part")
    files, ignored = discover_landing_files(tmp_path)
    assert files == [] and ignored == []  # hidden: neither read nor reported
    done = w.finish()
    assert done.name == part.name[1:-5] and done.read_bytes() == b'{"event_id":"a"}\n{"event_id":"b"}\n'
    files, _ = discover_landing_files(tmp_path)
    assert [f.name for f in files] == [done.name]


def test_rotation_by_size_and_empty_segments_leave_nothing(tmp_path):
    w = SegmentWriter(tmp_path, "intake", max_bytes=20)
    w.append([b'{"event_id":"aaaaaaa"}\n'])  # over 20 bytes: finished at once
    assert w.current_part is None and len(list(tmp_path.glob("intake-*.jsonl"))) == 1
    w.append([])
    assert w.finish() is None and not list(tmp_path.glob(".*"))


def test_recovery_keeps_complete_lines_and_drops_a_torn_one(tmp_path):
    (tmp_path / ".intake-1.jsonl.part").write_bytes(b'{"event_id":"a"}\n{"event_id":"b"}\n{"event_id":"c')
    (tmp_path / ".intake-2.jsonl.part").write_bytes(b'{"event_i')  # nothing complete: removed
    (tmp_path / ".keep-me.tmp").write_bytes(b"someone else's")
    finished = recover_parts(tmp_path)
    assert [p.name for p in finished] == ["intake-1.jsonl"]
    assert [json.loads(x)["event_id"] for x in finished[0].read_text().splitlines()] == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep-me.tmp", "intake-1.jsonl"]


def test_undo_last_takes_back_an_unacknowledged_append(tmp_path):
    w = SegmentWriter(tmp_path, "intake")
    w.append([b"one\n"])
    w.append([b"two\n"])
    w.undo_last()
    assert w.finish().read_bytes() == b"one\n"
