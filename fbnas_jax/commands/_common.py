"""What every subcommand shares: exit codes, one-line errors, ``--set``, stderr messages,
output-path checks and the Ctrl-C watchdog.

Exit codes: 0 done; 1 the work failed (training diverged, a write failed: disk full);
2 bad input (arguments, config, data, a checkpoint or workdir that does not match);
3 the workdir is in use by another run; 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import os
import sys

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_BUSY, EXIT_INTERRUPTED = 1, 2, 3, 130


class UsageError(ValueError):
    """A command's argument or input is wrong (exit 2, one line)."""

# (module, class) of errors that mean "the input is wrong": one line, exit 2. Looked up in
# sys.modules only -- an exception class can only be raised once its module is imported.
_BAD_INPUT = (
    ("fbnas_jax.commands._common", "UsageError"),
    ("fbnas_jax.config", "ConfigError"),
    ("fbnas_jax.data.dataset", "DatasetError"),
    ("fbnas_jax.spaces.nb201", "SearchSpaceError"),
    ("fbnas_jax.spaces.base", "SearchSpaceError"),
    ("fbnas_jax.groundtruth", "GroundTruthError"),
    ("fbnas_jax.bench.correlation", "BenchError"),
    ("fbnas_jax.indicators.base", "UnknownIndicatorError"),
    ("fbnas_jax.scoring", "CheckpointMismatchError"),
    ("fbnas_jax.scoring", "DataMismatchError"),
    ("fbnas_jax.search.algorithms", "SearchError"),
    ("fbnas_jax.training.checkpoint", "IncompatibleCheckpointError"),
    ("fbnas_jax.scores_io", "ScoresColumnError"),
)
_FAILED = (
    ("fbnas_jax.training.loop", "TrainingDivergedError"),
    ("fbnas_jax.training.checkpoint", "CheckpointWriteError"),
    ("fbnas_jax.training.checkpoint", "UnreadableCheckpointsError"),
)
_BUSY = (("fbnas_jax.training.loop", "WorkdirBusyError"),)


def _loaded(pairs) -> tuple[type, ...]:
    return tuple(getattr(sys.modules[m], c) for m, c in pairs if m in sys.modules and hasattr(sys.modules[m], c))


def classify(err: BaseException) -> tuple[int, str] | None:
    """``(exit code, one-line message)`` for an expected failure, None for a bug (traceback)."""
    from fbnas_jax.runtime import no_space_error

    full = no_space_error(err)
    if full is not None:
        if isinstance(err, _loaded(_FAILED)):
            return EXIT_FAILED, str(err)
        where = full.filename or getattr(err, "filename", None)
        return EXIT_FAILED, f"{where + ': ' if where else ''}no space left on device ({type(err).__name__})"
    if isinstance(err, _loaded(_BUSY)):
        return EXIT_BUSY, str(err)
    if isinstance(err, _loaded(_FAILED)):
        return EXIT_FAILED, str(err)
    if isinstance(err, _loaded(_BAD_INPUT)):
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        return EXIT_BAD_INPUT, str(msg)
    if isinstance(err, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        return EXIT_BAD_INPUT, str(err)
    return None


def log(message: str) -> None:
    """Progress and status lines go to stderr, so stdout stays the command's result."""
    print(message, file=sys.stderr, flush=True)


class _SetAction(argparse.Action):
    """``--set a.b=1 c.d=2 --set e.f=3``: every item of every ``--set`` applies, in order.

    Items without ``=`` are kept aside (``args._loose``): a positional argument written after
    ``--set`` (``fbnas train-arch --set train.epochs=1 ARCH``); :func:`take_loose` decides.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        loose = list(getattr(namespace, "_loose", None) or [])
        for v in values:
            (items if "=" in v else loose).append(v)
        setattr(namespace, self.dest, items)
        namespace._loose = loose


def add_set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", nargs="+", action=_SetAction, default=[], metavar="SECTION.KEY=VALUE",
                   help="override config keys, e.g. --set train.epochs=2 model.channels=8; "
                        "may be repeated, every item applies")


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    """``--strategy`` / ``--precision`` of the scoring engine (see :mod:`fbnas_jax.engine`)."""
    p.add_argument("--strategy", choices=("auto", "vmap", "map", "loop", "route"), default="auto",
                   help="how architectures are executed: 'vmap' = one vmapped launch per chunk, every candidate "
                        "op computed (GPUs); 'map' = lax.map over the chunk, only the chosen ops run "
                        "(lax.switch; CPUs); 'loop' = a Python loop over one compiled per-architecture program; "
                        "'route' = one launch per chunk computing each op only for the architectures that chose "
                        "it (NB201 supernet; CPI's indicators); "
                        "'auto' (default) = the backend's measured default. Same scores either way")
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="compute precision of convolutions (bfloat16 only for indicators validated to keep their "
                        "ranks, fbnas_jax.engine.BF16_SAFE; float32 for the others)")


def take_loose(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Give a positional swallowed by ``--set`` back to ``args.arch``, or refuse it clearly."""
    loose = list(getattr(args, "_loose", None) or [])
    if not loose:
        return
    if hasattr(args, "arch") and args.arch is None and len(loose) == 1:
        args.arch = loose[0]
        return
    parser.error(f"--set takes SECTION.KEY=VALUE items; unexpected {loose}")


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, not after an hour of work, if ``path`` cannot be written (its directory is
    created if missing). Raises ``PermissionError`` / ``NotADirectoryError`` with the path."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"--out {path!r} is a directory; give a file name")
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cannot create the output directory {parent!r}: {err.strerror}") from None
    probe = os.path.join(parent, f".{os.path.basename(path)}.{os.getpid()}.probe")
    try:
        with open(probe, "w"):
            pass
        os.remove(probe)
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise PermissionError(f"{path!r} exists and is not writable")
    except PermissionError:
        raise
    except OSError as err:
        raise PermissionError(f"cannot write to {parent!r}: {err.strerror}") from None


def install_interrupt_watchdog(grace_s: float = 3.0) -> None:
    """Make Ctrl-C stop the process within ``grace_s`` seconds, whatever it is doing.

    Python raises ``KeyboardInterrupt`` only between bytecodes: inside a long XLA compilation
    or computation, or in exit handlers waiting for one, the process keeps running at 100 %
    CPU. ``signal.set_wakeup_fd`` has the C-level handler write the signal number to a socket
    at once; a daemon thread reading it gives the normal path ``grace_s`` seconds (the
    ``KeyboardInterrupt`` handlers print "interrupted" and return 130), then ends the process
    with ``os._exit(130)``. Checkpoints stay safe: orbax writes a step atomically.
    """
    import signal
    import socket
    import threading
    import time

    if threading.current_thread() is not threading.main_thread():
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def watch():
        while True:
            data = reader.recv(16)
            if not data:
                return
            if signal.SIGINT in data or signal.SIGTERM in data:
                time.sleep(grace_s)
                try:
                    sys.stderr.write("interrupted\n")
                    sys.stderr.flush()
                finally:
                    os._exit(EXIT_INTERRUPTED)

    threading.Thread(target=watch, name="fbnas-interrupt-watchdog", daemon=True).start()
    install_interrupt_watchdog.sockets = (reader, writer)  # keep them open
