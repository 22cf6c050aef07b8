"""The run store: an append-only, fsynced JSONL run file plus a manifest; what --resume reads."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wattbench.redact import scrub_record
from wattbench.loadgen.plan import RecordSinkError, RequestRecord, WorkItem, iso_utc, latest_by_key  # noqa: F401


class RunStoreError(RecordSinkError):
    """A run that cannot be resumed as asked; the message says why and what to do."""


MANIFEST_CHECKED = ("prompts_sha256", "model", "profiles", "repeats")


class RunStore:
    """A run on disk: `<out>/runs/<run_id>/manifest.json` and `requests.jsonl` (one finished request per
    line, appended, flushed and fsynced before the request counts as done)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.run_id = self.directory.name
        self.manifest_path = self.directory / "manifest.json"
        self.records_path = self.directory / "requests.jsonl"
        self._handle: Any = None
        self._records: list[dict[str, Any]] | None = None  # the run file, once read (records())

    @classmethod
    def create(
        cls, out_dir: str | os.PathLike[str], manifest: Mapping[str, Any], run_id: str | None = None
    ) -> RunStore:
        """Start a new run under `out_dir/runs/`."""
        run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:4]
        store = cls(Path(out_dir) / "runs" / run_id)
        store.directory.mkdir(parents=True, exist_ok=False)
        data = {"run_id": run_id, "created_at": iso_utc(time.time()), **manifest}
        _write_atomic(store.manifest_path, json.dumps(data, indent=2) + "\n")
        store.records_path.touch()
        return store

    @classmethod
    def open(cls, out_dir: str | os.PathLike[str], run_id: str | None = None) -> RunStore:
        """An existing run: `run_id`, or the most recently started one under `out_dir/runs/`."""
        runs_dir = Path(out_dir) / "runs"
        if run_id:
            store = cls(runs_dir / run_id)
            if not store.manifest_path.is_file():
                raise RunStoreError(f"no run {run_id!r} under {runs_dir} (no manifest.json there)")
            return store
        candidates = sorted(p.parent for p in runs_dir.glob("*/manifest.json")) if runs_dir.is_dir() else []
        if not candidates:
            raise RunStoreError(f"nothing to resume: no run under {runs_dir}; drop --resume to start one")
        return cls(max(candidates, key=lambda d: d.joinpath("manifest.json").stat().st_mtime_ns))

    def manifest(self) -> dict[str, Any]:
        """The run's manifest.json; RunStoreError when it is not a JSON object."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunStoreError(
                f"{self.manifest_path} is damaged ({exc}); start a new run without --resume"
            ) from None
        if not isinstance(data, dict):
            raise RunStoreError(
                f"{self.manifest_path} is not a JSON object; start a new run without --resume"
            )
        return data

    def check_matches(self, wanted: Mapping[str, Any]) -> None:
        """Refuse to resume when the prompts, model, profiles or repeats differ from the run's manifest."""
        have = self.manifest()
        for key in MANIFEST_CHECKED:
            if key in wanted and have.get(key) != wanted[key]:
                what = "prompts file content" if key == "prompts_sha256" else key
                raise RunStoreError(
                    f"cannot resume run {self.run_id}: "
                    f"its {what} was {have.get(key)!r}, now {wanted[key]!r}; "
                    "rerun with the run's options, or drop --resume to start a new run"
                )

    def records(self) -> list[dict[str, Any]]:
        """Every record of the run: read from the run file once (load_records), then kept up to date by
        append(). A run reads its file once however many of its steps need the records."""
        if self._records is None:
            self._records = self.load_records()
        return self._records

    def load_records(self) -> list[dict[str, Any]]:
        """Every complete line of the run file. A last line cut short by a kill is dropped and cut off the
        file, so that appending goes on cleanly."""
        if not self.records_path.is_file():
            return []
        data = self.records_path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.records_path, "r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
        records = []
        for lineno, line in enumerate(data[:end].splitlines(), start=1):
            if line.strip():
                records.append(self._parse_line(line, lineno))
        return records

    def _parse_line(self, line: bytes, lineno: int) -> dict[str, Any]:
        try:
            record = json.loads(line)
        except ValueError as exc:
            record = exc
        if not isinstance(record, dict) or not {"key", "success"} <= record.keys():
            raise RunStoreError(
                f"{self.records_path} line {lineno} is not a request record; delete that line "
                "(that request is then sent again) and rerun"
            )
        return record

    def append(self, record: RequestRecord | Mapping[str, Any]) -> None:
        """Write one finished request and make it durable (flush + fsync) before returning."""
        if self._handle is None:
            self._handle = open(self.records_path, "a", encoding="utf-8")
        row = asdict(record) if isinstance(record, RequestRecord) else dict(record)
        # every secret masked before it is written: the CSV and the report are built from this file
        row = scrub_record(row)
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        if self._records is not None:
            self._records.append(row)

    def close(self) -> None:
        """Close the run file. Every record was flushed and fsynced by append(), so a failure here (a full disk
        refusing a partial write that append() already reported) loses nothing and is not raised again."""
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.close()
            except OSError:
                pass


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def pending_items(items: Sequence[WorkItem], records: Iterable[Mapping[str, Any]]) -> list[WorkItem]:
    """The items a resumed run still has to send: never served (missing, or recorded as failed)."""
    served = {key for key, r in latest_by_key(records).items() if r.get("success")}
    return [item for item in items if item.key not in served]
