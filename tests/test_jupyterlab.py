"""JupyterLab starts from the project environment and runs the overview notebook's code."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "registry-lab"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab_server(tmp_path):
    port, token = _free_port(), "registry-lab-test-token"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}", "--ServerApp.port_retries=0", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"token {token}"}
    try:
        for _ in range(120):
            try:
                if requests.get(f"{base}/api/status", headers=headers, timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer /api/status within 60 s")
        yield base, headers, tmp_path / "runtime"
    finally:
        requests.post(f"{base}/api/shutdown", headers=headers, timeout=5)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_lab_serves_the_project_kernel_and_runs_overview_code(lab_server):
    from jupyter_client import BlockingKernelClient

    base, headers, runtime = lab_server
    status = requests.get(f"{base}/api/status", headers=headers, timeout=5)
    assert status.ok
    specs = requests.get(f"{base}/api/kernelspecs", headers=headers, timeout=5).json()
    assert KERNEL in specs["kernelspecs"], sorted(specs["kernelspecs"])
    argv0 = specs["kernelspecs"][KERNEL]["spec"]["argv"][0]
    assert Path(argv0).resolve().parent == Path(sys.executable).resolve().parent, "kernel points at .venv"

    kernel = requests.post(f"{base}/api/kernels", headers=headers, json={"name": KERNEL}, timeout=30).json()
    try:
        client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{kernel['id']}.json"))
        client.load_connection_file()
        # No heartbeat channel: a kernel that is slow to answer its first heartbeat on a loaded
        # machine would be declared dead; the server's kernel API says whether it is alive.
        client.start_channels(hb=False)
        client.wait_for_ready(timeout=60)
        state = requests.get(f"{base}/api/kernels/{kernel['id']}", headers=headers, timeout=10).json()
        assert state["execution_state"] != "dead", state
        nb = json.loads((ROOT / "notebooks" / "00_cohort_overview.ipynb").read_text())
        first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
        outputs = []
        reply = client.execute_interactive("".join(first_code["source"]) + "\nprint('cell ran')",
                                           timeout=120, output_hook=outputs.append)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert any("cell ran" in o["content"].get("text", "") for o in outputs)
        client.stop_channels()
    finally:
        requests.delete(f"{base}/api/kernels/{kernel['id']}", headers=headers, timeout=10)
