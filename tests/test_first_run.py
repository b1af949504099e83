"""The first run on a fresh machine: an empty data folder, MNIST fetched by torchvision from a (local) mirror."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from torchvision.datasets import MNIST

from advnets.data import MNIST_RAW
from advnets.errors import UserError
from advnets.training import train

from conftest import QUICK, assert_user_error, compose_cfg, run_refused


@pytest.fixture(scope="module")
def mnist_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A real HTTP server on 127.0.0.1 serving the four MNIST files gzipped, as the official mirrors do."""
    source = Path(os.environ.get("ADVNETS_DATA_DIR", "")) / "MNIST" / "raw"
    if not source.is_dir():
        pytest.skip("set ADVNETS_DATA_DIR to a folder with MNIST/raw (CI sets it)")
    served = tmp_path_factory.mktemp("mirror")
    resources = []
    for name in MNIST_RAW:
        with (source / name).open("rb") as src, gzip.open(served / f"{name}.gz", "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst)
        resources.append((f"{name}.gz", hashlib.md5((served / f"{name}.gz").read_bytes()).hexdigest()))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", resources
    finally:
        server.shutdown()
        server.server_close()


def test_an_empty_data_folder_is_downloaded_verified_and_trained_on(
    mnist_mirror: tuple[str, list[tuple[str, str]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, resources = mnist_mirror
    monkeypatch.setattr(MNIST, "mirrors", [url])
    monkeypatch.setattr(MNIST, "resources", resources)
    data, run = tmp_path / "fresh-data", tmp_path / "run"
    cfg = compose_cfg(
        [
            "experiment=paper_mnist",
            f"dataset.root={data}",
            "dataset.download=true",
            "model=small",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=3",
            "logger=none",
            "callbacks.progress_bar=null",
            "evaluate=false",
            "threads=1",
        ],
        output_dir=run,
    )
    train(cfg)
    raw = data / "MNIST" / "raw"
    for name, (size, md5) in MNIST_RAW.items():
        assert (raw / name).stat().st_size == size
        assert hashlib.md5((raw / name).read_bytes()).hexdigest() == md5
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_without_download_one_line_says_where_the_files_go(tmp_path: Path) -> None:
    data = tmp_path / "empty"
    proc = run_refused(
        "train",
        *QUICK,
        "dataset=mnist",
        "model=small",
        f"dataset.root={data}",
        "dataset.download=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_user_error(proc, str(data / "MNIST" / "raw"), "dataset.download=true")
    assert not data.exists() or not any(data.rglob("*-ubyte"))


def test_a_failed_download_keeps_its_cause_says_what_to_do_and_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on: every download is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{port}/"])
    data = tmp_path / "fresh-data"
    cfg = compose_cfg(
        [
            "experiment=paper_mnist",
            f"dataset.root={data}",
            "dataset.download=true",
            "model=small",
            "logger=none",
            "threads=1",
        ],
        output_dir=tmp_path / "run",
    )
    with pytest.raises(UserError) as caught:
        train(cfg)
    message = str(caught.value)
    assert "\n" not in message
    assert "downloading train-images-idx3-ubyte.gz failed" in message and "Connection refused" in message
    assert "ADVNETS_DATA_DIR" in message and "dataset.download=false" in message
    assert not data.exists()  # no empty MNIST/raw/ left behind
