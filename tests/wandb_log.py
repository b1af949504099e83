"""Read a W&B offline run's ``.wandb`` file: a LevelDB-style log of ``wandb.proto`` ``Record`` messages.

File: a 7-byte header (``:W&B``, magic 0xBEE1 little-endian, version 0), then 32 KiB blocks of chunks, each
``crc32c (4) | length (2, LE) | type (1: full, 2: first, 3: middle, 4: last) | data``; a block tail shorter
than a chunk header is zero padding.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B log"
    magic, version = struct.unpack("<HB", data[4:7])
    assert (magic, version) == (0xBEE1, 0), (magic, version)
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:  # padding
            pos += left_in_block
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            pending = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            pending += chunk
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        records.append(record)
    return records


def history(records: list[wandb_internal_pb2.Record]) -> list[dict]:
    """Every ``history`` row as {key: value} with JSON-decoded values."""
    rows = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item})
    return rows


def run_info(records: list[wandb_internal_pb2.Record]) -> wandb_internal_pb2.RunRecord:
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert runs, "no run record"
    return runs[0]


def offline_run_file(run_dir: Path) -> Path:
    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert files, f"no W&B offline run under {run_dir}"
    return files[-1]


def config(records: list[wandb_internal_pb2.Record]) -> dict:
    """The run's config: the run record's and every later ``config`` record's updates, JSON-decoded."""
    out: dict = {}
    for r in records:
        kind = r.WhichOneof("record_type")
        updates = r.run.config.update if kind == "run" else r.config.update if kind == "config" else []
        for item in updates:
            out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out
