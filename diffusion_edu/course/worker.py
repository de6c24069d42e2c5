"""The grader's run step (``grade`` module docstring, step 2): a worker process and a fresh kernel per submission,
under time, memory and output limits. Run as ``python -m diffusion_edu.course.worker TMP CELL_S NOTEBOOK_S MEMORY_MB``.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .memory import proc_memory_mib
from ..checks import RESULT_MIME
from .merge import one_line

KERNEL = "diffusion-edu-grader"  # a kernelspec written per run, pointing at this very interpreter
OUTPUT_CAP = 1_000_000  # characters of output kept per cell: a print loop must not fill the worker's memory


@dataclass(frozen=True)
class Limits:
    """Per-submission limits. ``fast`` runs the notebooks in the course's fast mode (checks are unaffected)."""

    cell_seconds: float = 120.0
    notebook_seconds: float = 900.0
    memory_mb: int = 4096
    fast: bool = True

    def __post_init__(self):
        for name in ("cell_seconds", "notebook_seconds", "memory_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


# ----------------------------------------------------------------------------------------------------- the roles
def run_worker(tmp: Path, limits: Limits, threads: int) -> dict:
    """Run merged.ipynb in a worker process (which starts the kernel); a hard deadline backs the worker's own."""
    spec = tmp / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "diffusion-edu grader", "language": "python"}))
    work = tmp / "work"
    work.mkdir()
    env = {**os.environ, "JUPYTER_PATH": str(tmp), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "IPYTHONDIR": str(tmp / "ipython"), "MPLBACKEND": "Agg",
           "DIFFUSION_EDU_GRADER": "1", "PYTHONWARNINGS": "ignore",
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           # On the CPU: checks are exact there, and RLIMIT_AS would break CUDA's address-space reservations.
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("DIFFUSION_EDU_STRICT", None)
    env.pop("DIFFUSION_EDU_FAST", None)
    if limits.fast:
        env["DIFFUSION_EDU_FAST"] = "1"
    command = [sys.executable, "-m", "diffusion_edu.course.worker", str(tmp), str(limits.cell_seconds),
               str(limits.notebook_seconds), str(limits.memory_mb)]
    stopped, log = None, tmp / "worker.log"
    with log.open("wb") as sink:  # a file, not a pipe: nothing a submission prints can fill our memory
        worker = subprocess.Popen(command, cwd=work, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        _RUNNING[worker.pid] = tmp
        try:
            worker.wait(timeout=limits.notebook_seconds + 120)
        except subprocess.TimeoutExpired:
            _kill(worker.pid)
            worker.wait()
            stopped = f"the grader stopped this submission after {limits.notebook_seconds + 120:g} s"
        finally:
            _RUNNING.pop(worker.pid, None)
            _kill_kernel(tmp)  # a kernel that outlived its worker (the worker crashed, or was killed just now)
    report = tmp / "report.json"
    if stopped is None and worker.returncode == 0 and report.exists():
        return json.loads(report.read_text())
    # A worker that did not finish wrote nothing worth trusting (the kernel may have written those files).
    (tmp / "executed.ipynb").unlink(missing_ok=True)
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - 2000))
        tail = " ".join(handle.read().decode(errors="replace").strip().splitlines()[-3:])[-300:]
    if "MemoryError" in tail or "failed to map" in tail:
        tail += " (is --memory-mb too low for the course?)"
    return {"stopped": stopped or f"the grader's worker failed (exit {worker.returncode}): {tail}"}


_RUNNING: dict[int, Path] = {}  # worker pid → its folder, while it runs (for Ctrl-C)


def stop_all_workers() -> None:
    for pid, tmp in list(_RUNNING.items()):
        _kill(pid)
        _kill_kernel(tmp)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _kill(pid: int | None) -> None:
    """SIGKILL a process group led by pid (workers and kernels each start their own session)."""
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_kernel(tmp: Path) -> None:
    """Kill the submission's kernel if it still runs: the pid its worker recorded, if that process is still
    the kernel started for ``tmp`` (its command line names the connection file under ``tmp``)."""
    pid = _read_pid(tmp / "kernel.pid")
    try:
        alive = pid and str(tmp) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        alive = False
    if alive:
        _kill(pid)


def _peak_mb(pid: int | None) -> float | None:
    """The kernel's peak resident memory in MiB, or None where /proc cannot tell (not Linux, no kernel)."""
    try:
        return round(proc_memory_mib("VmHWM", pid), 1)
    except (OSError, RuntimeError, ValueError):
        return None


def _worker(tmp: str, cell_seconds: str, notebook_seconds: str, memory_mb: str) -> None:
    """In the worker process: cap memory (inherited by the kernel), run every code cell, write the report."""
    import resource

    limit = int(float(memory_mb) * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    tmp, cell_s, total_s = Path(tmp), float(cell_seconds), float(notebook_seconds)
    nb = nbformat.read(tmp / "merged.ipynb", as_version=4)
    replies: dict[int, dict] = {}

    class Client(NotebookClient):
        """nbclient, keeping at most OUTPUT_CAP characters of each cell's output (check verdicts always)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.sizes: dict[int, int] = {}  # characters of output so far, per cell

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            if RESULT_MIME in content.get("data", {}) or msg["msg_type"] == "error":
                return super().output(outs, msg, display_id, cell_index)
            size = len(content.get("text", "")) + sum(len(str(v)) for v in content.get("data", {}).values())
            before = self.sizes.get(cell_index, 0)
            self.sizes[cell_index] = before + size
            if before + size <= OUTPUT_CAP:
                return super().output(outs, msg, display_id, cell_index)
            if before < OUTPUT_CAP and msg["msg_type"] == "stream":  # keep the head of the stream
                head = {**msg, "content": {**content, "text": content["text"][:OUTPUT_CAP - before]}}
                super().output(outs, head, display_id, cell_index)
            if before <= OUTPUT_CAP:
                outs.append(nbformat.v4.new_output("stream", name="stderr",
                                                   text=f"\n[grader: output after {OUTPUT_CAP:,} characters dropped]\n"))
            return None

    client = Client(nb, kernel_name=KERNEL, timeout=int(cell_s), allow_errors=True, interrupt_on_timeout=True,
                    error_on_timeout={"ename": "TimeoutError", "evalue": "cell time limit"},
                    shutdown_kernel="immediate", resources={"metadata": {"path": os.getcwd()}},
                    on_cell_executed=lambda cell, cell_index, execute_reply: replies.__setitem__(
                        cell_index, execute_reply["content"]))
    report: dict = {"ran": [], "errors": [], "stopped": None, "peak_memory_mb": None}
    deadline, pid = time.monotonic() + total_s, None
    try:
        with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL):
            pid = getattr(client.km.provisioner, "pid", None)
            (tmp / "kernel.pid").write_text(str(pid or ""))
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                left = deadline - time.monotonic()
                if left < 1:
                    report["stopped"] = f"stopped at the notebook time limit ({total_s:g} s) before cell {index}"
                    break
                notebook_bound = left < cell_s  # this cell's timeout is what is left of the notebook's
                client.timeout = max(1, math.ceil(min(cell_s, left)))
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError:
                    report["died_in"] = index
                    report["stopped"] = (f"the kernel died in cell {index} (os._exit, exit(), a crash or the memory "
                                         "limit); the cells after it did not run")
                    break
                report["ran"].append(index)
                reply = replies.get(index, {})
                if reply.get("ename") == "TimeoutError" and reply.get("evalue") == "cell time limit":
                    cell.outputs.append(nbformat.v4.new_output(
                        "error", ename="TimeoutError", evalue=f"cell stopped after {client.timeout} s", traceback=[]))
                    if notebook_bound:
                        report["stopped"] = f"stopped at the notebook time limit ({total_s:g} s) in cell {index}"
                        break
                for out in cell.outputs:
                    if out.get("output_type") == "error":
                        report["errors"].append([index, one_line(out)])
            report["peak_memory_mb"] = _peak_mb(pid)
    except Exception as err:  # the kernel would not start, or nbclient failed: say so in the row
        report["stopped"] = report["stopped"] or f"grading failed: {type(err).__name__}: {str(err)[:200]}"
    finally:
        nbformat.write(nb, tmp / "executed.ipynb")
        (tmp / "report.json").write_text(json.dumps(report))


# ----------------------------------------------------------------------------------------------------- the class
if __name__ == "__main__":  # the worker: python -m diffusion_edu.course.worker TMP CELL_S NOTEBOOK_S MEMORY_MB
    _worker(*sys.argv[1:5])

