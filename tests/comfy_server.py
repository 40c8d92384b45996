"""A real ComfyUI server (the complete 0.3.75 tree, or COMFYUI_PATH) with this pack installed.

Started with ``--cpu`` on loopback and a free port, with a throw-away ``--base-directory`` whose
``custom_nodes/`` links to this repository; always shut down (process group killed), also when
a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import comfy_env

PACK_DIR_NAME = "ComfyUI-SamplerScheduler"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, root: Path | None = None):
        self.root = root or comfy_env.server_tree()
        self.base = Path(tempfile.mkdtemp(prefix="ss-comfy-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.base / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> ComfyServer:
        (self.base / "custom_nodes").mkdir(parents=True)
        (self.base / "custom_nodes" / PACK_DIR_NAME).symlink_to(comfy_env.REPO, target_is_directory=True)
        cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base), "--disable-auto-launch",
               "--database-url", "sqlite:///:memory:", "--preview-method", "latent2rgb"]
        log = open(self.log_path, "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # one torch thread: on a 2-core machine shared with the test process (or a benchmark) a multi-threaded
        # server spin-waits on every small op; the AYS example workflow took > 240 s that way and 6 s with one
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not start in {timeout}s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- HTTP -------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None, timeout: float = 30,
                content_type: str = "application/json") -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers={"Content-Type": content_type} if body is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get(self, path: str, timeout: float = 30):
        status, data = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise urllib.error.URLError(f"GET {path} -> {status}")
        return json.loads(data)

    def post_json(self, path: str, obj) -> tuple[int, dict]:
        status, data = self.request("POST", path, json.dumps(obj).encode())
        try:
            return status, json.loads(data)
        except json.JSONDecodeError:
            return status, {"raw": data.decode(errors="replace")}

    def queue(self, prompt: dict) -> tuple[int, dict]:
        return self.post_json("/prompt", {"prompt": prompt, "client_id": "sampler-scheduler-tests"})

    def wait(self, prompt_id: str, timeout: float = 240) -> dict:
        """Wait for a queued prompt to finish; return its /history entry."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s")

    def run(self, prompt: dict, timeout: float = 240) -> dict:
        status, resp = self.queue(prompt)
        if status != 200:
            raise AssertionError(f"/prompt rejected the workflow ({status}): {resp}")
        return self.wait(resp["prompt_id"], timeout)

    def output_path(self, image: dict) -> Path:
        return self.base / image.get("type", "output") / image.get("subfolder", "") / image["filename"]


def execution_error(entry: dict) -> str | None:
    """The exception message of a failed prompt (from /history), or None when it succeeded."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return f"{data.get('exception_type')}: {data.get('exception_message')}"
    return None
