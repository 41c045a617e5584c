"""The worker side of `mesh-runtime up`: a process the supervisor started to serve the mesh.

It is `up` itself, run again with the same arguments and a line to the supervisor in
the environment, so every option of `up` reaches the workers unchanged. Why it could
not serve goes to the supervisor, which shows it once however many workers failed.
"""

from __future__ import annotations

import argparse
import sys

from runtime.core.issues import MeshFileError


def run_worker(fd: int, args: argparse.Namespace) -> int:
    """Serve as a worker until told to stop; the exit code tells the supervisor why it ended."""
    import signal

    from runtime.core.lifeline import end_group_on
    from runtime.supervise.loop import run_fast

    # The supervisor died (SIGHUP, its parent-death signal, see workers.py): this worker
    # and every process its handlers forked end at once; nobody is left to stop them.
    end_group_on(signal.SIGHUP)

    return run_fast(_serve(fd, args))


async def _serve(fd: int, args: argparse.Namespace) -> int:
    from runtime.supervise.control import EXIT_CONNECTION_LOST
    from runtime.supervise.loop import exit_now_if_unfinished
    from runtime.supervise.runner import ConnectionLost, serve
    from runtime.supervise.startup import NatsUnreachable, StartupError
    from runtime.supervise.worker_link import WorkerLink

    try:
        link = await WorkerLink.open(fd)
    except ConnectionError:
        return 1  # the supervisor stopped before this worker was needed
    try:
        left = await serve(args.file, args.nats, reload=not args.no_reload, link=link,
                           metrics_port=args.metrics_port, metrics_host=args.metrics_host,
                           grace=args.grace)
    except MeshFileError as exc:
        await link.failed([str(issue) for issue in exc.issues], 1)
        return 1
    except StartupError as exc:
        await link.failed([f"error: {exc}"], 2, unreachable=isinstance(exc, NatsUnreachable))
        return 2
    except ConnectionLost as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONNECTION_LOST
    except ConnectionError:
        return 1  # the supervisor is gone
    exit_now_if_unfinished(left)
    return 0
