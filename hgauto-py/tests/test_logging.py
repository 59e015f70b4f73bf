"""Rust tracing events arrive in Python's logging, under the `hgauto` logger tree."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import hgauto


def test_provider_events_reach_logging(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hgauto")
    provider = hgauto.LocalProvider(tmp_path / "state")
    with provider.machines(count=1) as ms:
        ms[0].run("true")
    records = [r for r in caplog.records if r.name.startswith("hgauto.core")]
    assert records, caplog.records
    provisioned = [r for r in records if "provisioned" in r.getMessage()]
    assert provisioned and provisioned[0].levelno == logging.INFO
    assert provisioned[0].name == "hgauto.core.local.provider"
    # Fields and the Rust source location travel with the record.
    assert ms[0].id in provisioned[0].getMessage()
    assert provisioned[0].pathname.endswith(".rs") and provisioned[0].lineno > 0
    assert any("terminated" in r.getMessage() for r in records)


def test_logger_level_filters_records(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hgauto")
    with hgauto.LocalProvider(tmp_path / "state").machines(count=1):
        pass
    assert not [r for r in caplog.records if r.name.startswith("hgauto.") and r.levelno < logging.WARNING]


def test_logging_from_threads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import threading

    caplog.set_level(logging.INFO, logger="hgauto")
    provider = hgauto.LocalProvider(tmp_path / "state")

    def work() -> None:
        with provider.machines(count=1) as ms:
            ms[0].run("true")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len([r for r in caplog.records if "provisioned" in r.getMessage()]) == 4
