"""The daemon runner: workers share the port, and SIGTERM lets requests in flight finish.

Method: a real process runs a tiny aiohttp app through shoal.daemon.serve_app; the test talks to
it over a real socket.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

APP = textwrap.dedent(
    """
    import asyncio, os, sys
    from aiohttp import web
    from shoal.daemon import serve_app

    async def pid(request):
        return web.Response(text=str(os.getpid()))

    async def slow(request):
        await asyncio.sleep(1.5)
        return web.Response(text="finished")

    def churn_faults():
        import resource
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(100):
            buffer = bytes(bytearray(1024 * 1024))  # a body-sized buffer, made and dropped
            del buffer
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    async def churn(request):
        return web.Response(text=str(churn_faults()))

    async def gc_state(request):
        import gc
        return web.Response(text=f"{gc.get_threshold()[0]} {gc.get_freeze_count()}")

    def factory():
        app = web.Application()
        app.router.add_get("/pid", pid)
        app.router.add_get("/slow", slow)
        app.router.add_get("/churn", churn)
        app.router.add_get("/gc", gc_state)
        return app

    if sys.argv[1] == "churn-untuned":  # the same work in a plain interpreter
        print(churn_faults())
        sys.exit(0)

    sys.exit(serve_app(factory, host="127.0.0.1", port=int(sys.argv[1]), workers=int(sys.argv[2]),
                       shutdown_timeout_s=10, name="testd"))
    """
)


def start(tmp_path, workers: int, port: int | None = None) -> tuple[subprocess.Popen, int]:
    script = tmp_path / "app.py"
    script.write_text(APP)
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), str(workers)], stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    assert "testd listening on http://127.0.0.1:" in line, line
    return proc, port


def get(port: int, path: str, timeout: float = 10) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout).read().decode()


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            get(port, "/pid", timeout=1)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_workers_share_the_port(tmp_path):
    proc, port = start(tmp_path, workers=2)
    try:
        wait_ready(port)
        pids = {get(port, "/pid") for _ in range(60)}
        assert len(pids) == 2 and str(proc.pid) not in pids
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_sigterm_lets_a_request_in_flight_finish(tmp_path):
    proc, port = start(tmp_path, workers=1)
    wait_ready(port)
    result: dict[str, str] = {}
    thread = threading.Thread(target=lambda: result.setdefault("body", get(port, "/slow")))
    thread.start()
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGTERM)
    thread.join(timeout=10)
    assert result.get("body") == "finished"
    assert proc.wait(timeout=15) == 0


def test_a_second_copy_on_a_busy_port_refuses_to_start(tmp_path):
    """Workers use SO_REUSEPORT, which would let a second service share the port silently."""
    first, port = start(tmp_path, workers=2)
    try:
        wait_ready(port)
        second = subprocess.run(
            [sys.executable, str(tmp_path / "app.py"), str(port), "1"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode == 1
        assert second.stderr.strip() == (
            f"testd: cannot listen on 127.0.0.1:{port}: Address already in use"
        )
        assert "Traceback" not in second.stderr and second.stdout == ""
        answering = {int(get(port, "/pid")) for _ in range(30)}
        assert {_parent_of(pid) for pid in answering} == {first.pid}  # only the first's workers
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=20) == 0


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("PPid:"))


def test_served_processes_reuse_body_buffers_instead_of_faulting_them_in(tmp_path):
    """shoal.daemon tunes glibc malloc: a 1 MiB buffer made and dropped 100 times costs page
    faults by the hundred in a plain interpreter (each one a fresh mmap) and almost none in a
    served process."""
    proc, port = start(tmp_path, workers=1)
    try:
        wait_ready(port)
        get(port, "/churn")  # the heap grows once
        served_faults = int(get(port, "/churn"))
        threshold, frozen = (int(v) for v in get(port, "/gc").split())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    plain = subprocess.run(
        [sys.executable, str(tmp_path / "app.py"), "churn-untuned", "0"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert int(plain.stdout) > 1000  # ~256 per MiB buffer: the check can see the difference
    assert served_faults < 100
    assert threshold == 50_000 and frozen > 1000  # the start-up objects are never rescanned
