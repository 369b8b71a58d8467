"""The fake Hub (one per test session) and a runner for Hub clients in fresh processes.

The test process keeps HF_HUB_OFFLINE=1 (tests/conftest.py): huggingface_hub reads HF_ENDPOINT,
HF_HOME and HF_HUB_OFFLINE once, at import, so every client that talks to the fake Hub runs in a
subprocess whose environment is set before Python starts. Client scripts live in `clients/`,
write a JSON report, and the tests assert on its values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_hub import FakeHub

CLIENTS = Path(__file__).parent / "clients"
WRITE_TOKEN = "hf_fake_write_token"
READ_TOKEN = "hf_fake_read_token"


@pytest.fixture(scope="session")
def fake_hub():
    with FakeHub() as hub:
        yield hub


@pytest.fixture
def clean_failures(fake_hub):
    fake_hub.clear_failures()
    yield fake_hub
    fake_hub.clear_failures()


def client_env(hub: FakeHub, hf_home: Path, *, offline: bool = False, token: str | None = WRITE_TOKEN) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING_FACE_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1" if offline else "0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_XET="1",
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONHASHSEED="0",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def start_client(script: str, report: Path, env: dict, *args, wait_for: Path | None = None) -> tuple:
    """Starts `clients/<script>` in a fresh interpreter. With `wait_for`, the client imports its
    libraries at once but starts its work only when that file (another client's report) exists."""
    env = dict(env)
    if wait_for is not None:
        env["HUB_CLIENT_WAIT_FOR"] = str(wait_for)
    command = [sys.executable, str(CLIENTS / script), str(report), *map(str, args)]
    log = open(report.with_suffix(".log"), "w+")
    process = subprocess.Popen(command, env=env, cwd=report.parent, stdout=log, stderr=subprocess.STDOUT, text=True)
    return script, process, report, log


def finish_client(handle, timeout: float = 300) -> dict:
    """Waits for a started client; returns the JSON report it wrote, or fails with its output."""
    script, process, report, log = handle
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.seek(0)
    output = log.read()
    log.close()
    if process.returncode != 0 or not report.exists():
        raise AssertionError(f"{script} failed ({process.returncode}):\n{output[-12000:]}")
    return json.loads(report.read_text())


def run_client(script: str, report: Path, env: dict, *args) -> dict:
    return finish_client(start_client(script, report, env, *args))
