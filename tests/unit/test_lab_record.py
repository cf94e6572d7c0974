"""The lab's record of what it created is saved from several threads at once (background
steps, parallel joins): no save may lose its file to another's rename."""

import threading

from lab.net import cleanup


def test_record_saved_from_many_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(cleanup, "RECORDS", tmp_path)
    record = cleanup.LabRecord(name="race")
    errors = []

    def add(n):
        try:
            for i in range(50):
                record.add_process(f"node{n}", 100000 + n * 1000 + i, "/usr/sbin/tcpdump")
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            errors.append(e)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    saved = cleanup.LabRecord.load(record.path)
    assert saved is not None and len(saved.processes) == 400
    assert [p.name for p in tmp_path.iterdir()] == [record.path.name]
