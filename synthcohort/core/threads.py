"""How many threads torch may use in this process: one share of the CPUs, not all of them.

Why: torch starts one intra-op thread per CPU in *every* process. Several processes on one
machine (workers, a worker's prefork slots, a CLI run beside them) then run cores × processes
threads that fight for the cores; on 2 shared cores the diffusion preset fell from about 90 to
about 5 images/s. So each process takes its share, chosen in this order:

1. ``SYNTHCOHORT_TORCH_THREADS`` (settings) when set;
2. ``OMP_NUM_THREADS`` when set: the standard knob, which torch would follow anyway;
3. the CPUs this process may run on (``os.sched_getaffinity``: a cgroup cpuset or ``taskset``
   counts) divided by the processes sharing them, at least 1. A worker counts the torch slots
   of the live workers on its host (:func:`synthcohort.workers.health.host_slots`); a CLI run
   counts itself only.

torch is imported only inside :func:`apply_torch_threads` (the torch boundary, ARCHITECTURE.md).
"""

from __future__ import annotations

import os

from synthcohort.core.settings import get_settings


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads(processes: int = 1) -> int:
    """One share of the available CPUs among ``processes`` torch processes, at least 1."""
    return max(1, available_cpus() // max(1, int(processes)))


def torch_threads(processes: int = 1) -> int:
    """Intra-op threads for this process: the setting, else ``OMP_NUM_THREADS``, else a CPU share."""
    configured = get_settings().torch_threads
    if configured is not None:
        return configured
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()  # not a synthcohort setting: the OpenMP standard's
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    return default_threads(processes)


def apply_torch_threads(n: int) -> int:
    """Set torch's intra-op threads to ``n`` (and its inter-op pool, if no inter-op work started
    yet); returns ``torch.get_num_threads()``. Call it in the thread that runs the torch work:
    OpenMP keeps the count per thread."""
    import torch

    torch.set_num_threads(int(n))
    if torch.get_num_interop_threads() != int(n):
        try:
            torch.set_num_interop_threads(int(n))
        except RuntimeError:  # only possible before the first inter-op task; the intra-op count is what matters
            pass
    return torch.get_num_threads()
