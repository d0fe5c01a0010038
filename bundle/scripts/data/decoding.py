"""DICOM pixel decoding that no corrupt file can turn into the end of the process, under pydicom 3 and 2.4.

pydicom hands compressed pixel data to plugins: its own RLE decoder, Pillow, pylibjpeg (OpenJPEG), pyjpegls
(CharLS) and python-gdcm. All but GDCM answer a corrupt codestream with a Python exception. GDCM can instead abort
the whole process: on JPEG 2000 streams that start like a codestream and go on with garbage, its C++ code throws a
``std::string`` that nothing catches ("terminate called after throwing an instance of std::string", SIGABRT). In a
data loader that ends an inference run, a training run while its cache is built, or a MONAI Label server, which
runs the bundle's pre-processing in its own process. Measured on 40 corrupt streams per syntax and decoder
(truncated, garbage after a valid header, byte edits): GDCM aborted on 9 of 40 JPEG 2000 streams; Pillow,
pylibjpeg-openjpeg, pyjpegls, pydicom's RLE decoder, and GDCM on the other syntaxes, raised Python errors only.

So each syntax is decoded by a plan (:func:`decode_plan`):

1. the decoders that raise Python errors (:data:`IN_PROCESS_DECODERS`), in this process, first that is installed;
2. any other installed decoder (GDCM; pylibjpeg-libjpeg if a user installed it) in a child process
   (:class:`ContainedDecoder`): if it aborts, crashes or hangs, the child dies, this process raises
   :class:`DecoderCrashError` naming the file, the transfer syntax and "the decoder crashed on its pixel data",
   and the next file gets a fresh child.

The next plugin is tried when one fails, so a file only reaches GDCM when no in-process decoder reads it (JPEG
Lossless, for which GDCM is the only permissive decoder; 12-bit JPEG, which Pillow does not read) or when the others
have already refused it (a corrupt stream). Uncompressed pixel data needs no plugin. The child is started on first
need, once per process and thread, and stays for the next files: its normal-path cost is one copy of the pixels
through a pipe (see the model card's decoding measurements).

pydicom compatibility: MONAI Label 0.8.5 pins pydicom 2.4.4, whose decoders are "pixel data handlers" chosen with
``Dataset.convert_pixel_data(handler_name=...)``; pydicom 3 has ``pydicom.pixels`` with per-syntax decoders and
named plugins. :func:`pydicom_major` picks the API; both paths are tested (the pydicom 2.4 one in the MONAI Label
pins tier, ``scripts/check_pins.sh``).

This module imports nothing from the bundle: the child process loads it by file path.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CRASH_REASON",
    "DECODE_TIMEOUT_S",
    "IN_PROCESS_DECODERS",
    "ContainedDecoder",
    "DecodeError",
    "DecoderCrashError",
    "NoDecoderError",
    "decode_plan",
    "pixel_array",
    "pydicom_major",
    "syntax_label",
]

#: The words every crash report carries, so that a person (and a test) finds them.
CRASH_REASON = "the decoder crashed on its pixel data"
#: Seconds a contained decoder may take for one file before it is treated as hung and killed.
DECODE_TIMEOUT_S = 300.0

# pydicom 3 logs every failed plugin with a traceback and without the file name; pixel_array reports each failure
# with the file (in the error, which the bundle puts in summary.json or the refusal), so that log is only noise.
logging.getLogger("pydicom.pixels.decoders.base").setLevel(logging.CRITICAL)

# Transfer syntax families and their UIDs.
_FAMILIES: dict[str, tuple[str, ...]] = {
    "jpeg2000": ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"),
    "htj2k": ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"),
    "jpegls": ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"),
    "jpeg": ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"),
    "jpeg_lossless": ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"),
    "rle": ("1.2.840.10008.1.2.5",),
}

#: Decoders run in this process, per family, in order of preference: each raised only Python errors on every
#: corrupt stream of the fuzzing measurement (module notes). Names are pydicom 3's plugins, then pydicom 2.4's
#: handlers. pylibjpeg is listed only where it uses OpenJPEG (its libjpeg and RLE plugins were not measured).
IN_PROCESS_DECODERS: dict[int, dict[str, tuple[str, ...]]] = {
    3: {
        "jpeg2000": ("pylibjpeg", "pillow"),
        "htj2k": ("pylibjpeg",),
        "jpegls": ("pyjpegls",),
        "jpeg": ("pillow",),
        "jpeg_lossless": (),
        "rle": ("pydicom",),
    },
    2: {
        "jpeg2000": ("pylibjpeg", "pillow"),
        "htj2k": (),
        "jpegls": ("jpeg_ls",),
        "jpeg": ("pillow",),
        "jpeg_lossless": (),
        "rle": ("rle",),
    },
}


class DecodeError(ValueError):
    """Every installed decoder failed on a file's pixel data; the message names the syntax and each failure."""


class DecoderCrashError(DecodeError):
    """A contained decoder died (abort, crash) or hung on a file's pixel data."""


class NoDecoderError(DecodeError):
    """No installed decoder reads the file's transfer syntax; the message says what to install."""


def pydicom_major() -> int:
    """Major version of the installed pydicom (2 or 3; newer majors are treated as 3)."""
    import pydicom

    return min(int(pydicom.__version__.split(".")[0]), 3)


def syntax_label(syntax: Any) -> str:
    """``"<name> (<UID>)"`` of a transfer syntax UID, e.g. ``"RLE Lossless (1.2.840.10008.1.2.5)"``."""
    return f"{getattr(syntax, 'name', '') or 'unknown transfer syntax'} ({syntax})"


def _family(syntax: str) -> str | None:
    return next((family for family, uids in _FAMILIES.items() if str(syntax) in uids), None)


def _available_plugins(syntax: Any) -> list[str] | None:
    """Installed decoders that claim ``syntax``, in pydicom's own order; None if pydicom has none for it at all."""
    if pydicom_major() >= 3:
        # pydicom 3: per-syntax decoder objects with named plugins
        from pydicom.pixels import get_decoder

        try:
            return list(get_decoder(syntax).available_plugins)
        except NotImplementedError:  # no decoder for this syntax at all
            return None
    # pydicom 2.4: handler modules; pylibjpeg's handler is "available" without the plugin a syntax needs
    from pydicom import config
    from pydicom.pixel_data_handlers import pylibjpeg_handler

    handlers = [h for h in config.pixel_data_handlers if h is not None and h.supports_transfer_syntax(syntax)]
    if not handlers:
        return None
    names = []
    for handler in handlers:
        if not handler.is_available():
            continue
        if handler is pylibjpeg_handler:
            family = _family(syntax)
            plugin = {"jpeg2000": "HAVE_OPENJPEG", "rle": "HAVE_RLE"}.get(family or "", "HAVE_LIBJPEG")
            if not getattr(pylibjpeg_handler, plugin, False):
                continue
        names.append(handler.__name__.rsplit(".", 1)[-1].removesuffix("_handler"))  # numpy, gdcm, jpeg_ls, ...
    return names


def _missing_dependencies(syntax: Any) -> str:
    """What could be installed to decode ``syntax`` (pydicom's own list where it has one)."""
    if pydicom_major() >= 3:
        from pydicom.pixels import get_decoder

        try:
            return "; ".join(get_decoder(syntax).missing_dependencies)
        except NotImplementedError:
            return ""
    return ""


@dataclass(frozen=True)
class PlanStep:
    """One decoder to try: the plugin (pydicom 3) or handler (pydicom 2.4) name, and whether it runs contained."""

    plugin: str
    contained: bool


def decode_plan(syntax: Any) -> list[PlanStep]:
    """The decoders to try for ``syntax``, in order: in-process ones first, then the contained ones.

    Raises:
        NoDecoderError: no installed decoder reads ``syntax`` (the message names it and what to install).
    """
    if not getattr(syntax, "is_compressed", False):
        return [PlanStep("", False)]  # native pixel data: pydicom reads it with NumPy
    available = _available_plugins(syntax)
    if available is None:
        label = syntax_label(syntax)
        raise NoDecoderError(f"the pixel data uses the transfer syntax {label}, which pydicom cannot decode")
    trusted = IN_PROCESS_DECODERS[pydicom_major()].get(_family(syntax) or "", ())
    steps = [PlanStep(name, False) for name in trusted if name in available]
    steps += [PlanStep(name, True) for name in available if name not in trusted]
    if not steps:
        options = _missing_dependencies(syntax) or "a pydicom pixel data plugin"
        raise NoDecoderError(
            f"the pixel data is compressed as {syntax_label(syntax)} and no installed decoder reads it; install "
            f"one of: {options} (python-gdcm is BSD-licensed and reads every syntax; see 'Input requirements and "
            "errors' in docs/data-and-datalists.md)"
        )
    return steps


def decode_in_process(dataset: Any, plugin: str) -> np.ndarray:
    """``dataset.pixel_array`` decoded by ``plugin`` ("" for pydicom's default), in this process."""
    if plugin:
        if pydicom_major() >= 3:
            dataset.pixel_array_options(decoding_plugin=plugin)  # pydicom 3: per-dataset decoding options
        else:
            dataset.convert_pixel_data(handler_name=plugin)  # pydicom 2.4: decode now, cached for pixel_array
    return dataset.pixel_array


def _first_line(error: BaseException) -> str:
    """One line for a decoder's error: pydicom 3's per-plugin lines joined, object addresses and C++ noise out."""
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):  # pydicom 3: "exceptions were raised by all plugins:\n  x: why"
        text = "; ".join(lines[1:])
    else:
        text = lines[0] if lines else type(error).__name__
    return _tidy(text)


# the type of GDCM's uncaught exception, as the C++ runtime spells it
_CXX_STRING = re.compile(r"std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> ?>")


def _tidy(text: str) -> str:
    text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "(the codestream)", text)  # Pillow's message
    return _CXX_STRING.sub("std::string", text)


def pixel_array(dataset: Any, path: str | os.PathLike, timeout: float = DECODE_TIMEOUT_S) -> np.ndarray:
    """Decode the pixel data of ``dataset`` (read from ``path``) by :func:`decode_plan`; never ends the process.

    Args:
        dataset: the ``pydicom.Dataset`` of ``path`` (its pixel data not decoded yet).
        path: the file, which a contained decoder reads again in its own process.
        timeout: seconds a contained decoder may take before it is killed.

    Returns:
        What ``dataset.pixel_array`` returns: stored values, ``(rows, columns)`` or ``(rows, columns, samples)``.

    Raises:
        NoDecoderError: no installed decoder reads the syntax.
        DecoderCrashError: the last decoder tried was contained and died or hung (:data:`CRASH_REASON`).
        DecodeError: every decoder raised an error; each is named in the message.
    """
    syntax = dataset.file_meta.TransferSyntaxUID
    steps = decode_plan(syntax)
    failures: list[str] = []
    crashed = False
    for step in steps:
        try:
            if step.contained:
                return ContainedDecoder.for_this_thread().decode(path, step.plugin, timeout)
            return decode_in_process(dataset, step.plugin)
        except DecoderCrashError as error:
            failures.append(f"{step.plugin}: {error}")
            crashed = True
        except Exception as error:  # decoders raise many types; the next one may still read the file
            if not step.plugin:  # native pixel data: no other decoder to try
                raise
            reason = _first_line(error)
            failures.append(reason if reason.startswith(f"{step.plugin}: ") else f"{step.plugin}: {reason}")
    label = syntax_label(syntax)
    detail = "; ".join(failures)
    if crashed:
        raise DecoderCrashError(f"{CRASH_REASON} ({label}; {detail}); the file is probably corrupt")
    raise DecodeError(f"cannot decode its {label} pixel data ({detail})")


# ----------------------------------------------------------------------------------------------------------------
# The child process


class ContainedDecoder:
    """A child process that decodes DICOM files with a named plugin and sends the pixels back through a pipe.

    One per process and thread (:meth:`for_this_thread`): data-loader workers and the threads that fill a
    ``CacheDataset`` each get their own, started on first use. After a crash or a timeout the child is gone and the
    next call starts a new one. The child exits when its pipe closes (this process ends or :meth:`close`).
    """

    _local = threading.local()

    def __init__(self) -> None:
        #: CPU seconds the child spent on the last request (read, decode, send), for the decoding benchmark
        self.last_child_cpu_s = 0.0
        self._process: subprocess.Popen | None = None
        self._connection: Connection | None = None
        self._stderr: Any = None
        self._owner = os.getpid()

    @classmethod
    def for_this_thread(cls) -> ContainedDecoder:
        """The calling thread's decoder (a new one in a forked child: a parent's pipes must not be shared)."""
        decoder = getattr(cls._local, "decoder", None)
        if decoder is None or decoder._owner != os.getpid():
            decoder = cls._local.decoder = cls()
        return decoder

    def _start(self) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (kept open for the child's life, closed by close())
        # The child loads this file by path (no bundle import path needed) with the working directory removed
        # from sys.path, so that no folder or file of the caller shadows a package.
        boot = (
            "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
            "import importlib.util as u; s = u.spec_from_file_location('cxr_decoding_child', sys.argv[1]); "
            "m = sys.modules[s.name] = u.module_from_spec(s); s.loader.exec_module(m); m._serve()"
        )
        self._process = subprocess.Popen(
            [sys.executable, "-c", boot, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            close_fds=True,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        # one duplex-like pair: requests go to the child's stdin, replies come from its stdout
        self._requests = Connection(os.dup(self._process.stdin.fileno()), readable=False)
        self._connection = Connection(os.dup(self._process.stdout.fileno()), writable=False)
        self._process.stdin.close()
        self._process.stdout.close()
        _widen_pipe(self._connection.fileno())

    def close(self) -> None:
        """Stop the child (it also stops by itself when this process ends)."""
        for connection in (getattr(self, "_requests", None), self._connection):
            if connection is not None:
                connection.close()
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._stderr is not None:
            self._stderr.close()
        self._process = self._connection = self._stderr = None
        self._requests = None

    def _death(self, timeout: float | None) -> str:
        """Kill the child if it still runs; say how it ended (signal or exit status, its last stderr line)."""
        assert self._process is not None
        if timeout is not None:
            self._process.kill()
        code = self._process.wait()
        message = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            lines = [line.strip() for line in self._stderr.read().decode(errors="replace").splitlines()]
            message = next((line for line in reversed(lines) if line), "")
        if timeout is not None:
            how = f"no answer within {timeout:g} s, killed"
        elif code < 0:
            how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exit status {code}"
        self.close()
        return how + (f": {_tidy(message)[:200]}" if message else "")

    def decode(self, path: str | os.PathLike, plugin: str, timeout: float = DECODE_TIMEOUT_S) -> np.ndarray:
        """Decode ``path`` with ``plugin`` in the child; the pixels come back as a NumPy array.

        Raises:
            DecoderCrashError: the child died or did not answer within ``timeout`` seconds; the message says how
                (signal or exit status, and the child's last line on stderr).
            DecodeError: the decoder raised a Python error (its first line is the message).
        """
        if self._process is None or self._process.poll() is not None:
            self.close()
            self._start()
        assert self._connection is not None and self._requests is not None
        try:
            self._requests.send_bytes(pickle.dumps((str(path), plugin)))
            if not self._connection.poll(timeout):
                raise DecoderCrashError(self._death(timeout))
            status, value = pickle.loads(self._connection.recv_bytes())
            if status == "error":
                raise DecodeError(value)
            shape, dtype, self.last_child_cpu_s = value
            array = np.empty(shape, dtype)
            _read_exactly(self._connection.fileno(), memoryview(array.reshape(-1)).cast("B"))
            return array
        except (EOFError, OSError, BrokenPipeError) as error:  # the child died before or while answering
            raise DecoderCrashError(self._death(None)) from error


def _serve() -> None:
    """The child's loop: read ``(path, plugin)`` requests, answer with the pixels or the error (runs in the child)."""
    import time
    import warnings

    import pydicom

    warnings.simplefilter("ignore")  # the parent reports what matters; pydicom's warnings would only be noise
    requests = Connection(os.dup(0), writable=False)
    replies = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the reply pipe
    while True:
        try:
            path, plugin = pickle.loads(requests.recv_bytes())
        except EOFError:  # the parent closed the pipe or ended
            return
        started = time.process_time()
        try:
            array = np.ascontiguousarray(decode_in_process(pydicom.dcmread(path), plugin))
        except Exception as error:  # reported to the parent, which names the file
            replies.send_bytes(pickle.dumps(("error", _first_line(error))))
            continue
        replies.send_bytes(pickle.dumps(("ok", (array.shape, array.dtype.str, time.process_time() - started))))
        _write_all(replies.fileno(), memoryview(array.reshape(-1)).cast("B"))


# The pixels travel as raw bytes after a small pickled header: written from the child's array and read straight into
# the parent's, without the intermediate buffers of Connection.send_bytes/recv_bytes_into (measured: about half the
# time for 12 MB), through a pipe widened to 1 MB where Linux allows it (fewer wake-ups per image).
_F_SETPIPE_SZ = 1031  # Linux fcntl command; elsewhere the pipe keeps its size


def _widen_pipe(fd: int, size: int = 1 << 20) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
    except (ImportError, OSError):  # not Linux, or above /proc/sys/fs/pipe-max-size: the default size works too
        pass


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _read_exactly(fd: int, buffer: memoryview) -> None:
    done = 0
    while done < len(buffer):
        count = os.readv(fd, [buffer[done:]])
        if count == 0:
            raise EOFError("the decoder process closed its pipe")
        done += count


def plugins_for(syntaxes: Sequence[Any]) -> dict[str, list[PlanStep]]:
    """The decode plan of each syntax (for logs and the tests), ``{label: steps}``; a syntax without one: ``[]``."""
    plans = {}
    for syntax in syntaxes:
        try:
            plans[syntax_label(syntax)] = decode_plan(syntax)
        except NoDecoderError:
            plans[syntax_label(syntax)] = []
    return plans
