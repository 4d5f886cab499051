"""Logging to --log in runc's formats, without the `logging` module (2+ ms to import).

containerd's shim passes `--log <bundle>/log.json --log-format json` and, on failure, reads the
last line whose level is "error": `{"level":"error","msg":"...","time":"<RFC 3339>"}` (logrus
field order). Text format is logrus' `time="..." level=error msg="..."`. Without --log,
debug lines go to stderr in text format; errors always also go to stderr as `runh: <msg>`.
"""

import posix as os  # not `os` (0.9 ms under -I -S); open/write/close are all posix has to give
import sys
import time


def _quote(s):
    from runh.jsonio import _enc_str  # same escaping as logrus' quoted text values

    return _enc_str(s)


class Logger:
    def __init__(self, path=None, fmt="text", debug=False):
        self.path = path or None
        self.fmt = fmt or "text"
        self.debug_enabled = bool(debug)

    def _line(self, level, msg):
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            from runh.jsonio import dumps

            return dumps({"level": level, "msg": msg, "time": now}) + "\n"
        return f"time={_quote(now)} level={level} msg={_quote(msg)}\n"

    def _write(self, level, msg, to_stderr):
        line = self._line(level, msg)
        if self.path:
            try:
                # O_APPEND: the shim and several runh calls may share one log file.
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
                return
            except OSError:
                pass  # fall back to stderr: an unwritable log must not hide the error
        if to_stderr:
            sys.stderr.write(line)

    def debug(self, msg):
        if self.debug_enabled:
            self._write("debug", msg, True)

    def warn(self, msg):
        self._write("warning", msg, True)

    def error(self, msg):
        """Record an error: a line in --log (if any) and `runh: msg` on stderr."""
        if self.path:
            self._write("error", msg, False)
        sys.stderr.write(f"runh: {msg}\n")
        sys.stderr.flush()


# The process-wide logger, replaced by the CLI once global flags are parsed.
logger = Logger()
