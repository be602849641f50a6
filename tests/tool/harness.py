"""What the `vfio-emu` tool tests share: a real vfio-emud in FUSE mode on a fresh temporary
directory with a private control socket, the mapping client that gives it known mappings, a way
to run the tool, and a checker that reports every failed expectation before failing.

Everything is bounded by a timeout, and everything started is stopped again (the daemon is
killed if SIGTERM does not stop it, a FUSE mount left behind is lazily unmounted), also when the
test itself is stopped with SIGTERM or SIGINT (meson's timeout).

Each test script runs as
    python3 test_X.py --daemon build/cuse/vfio-emud --tool build/tools/vfio-emu \\
                      --client build/tests/tool/tool-mapping-client
"""

import argparse
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--daemon", required=True)
    p.add_argument("--tool", required=True)
    p.add_argument("--client", required=True)
    return p.parse_args()


class Stopped(Exception):
    """Raised in the main thread when the test is told to stop (SIGTERM/SIGINT)."""


def _stop(signum, _frame):
    raise Stopped(f"stopped by signal {signum}")


def hexs(v):
    return f"{v:#x}"


def mounted(path):
    # From the mount table, not stat(): stat on a dead FUSE mount can block.
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f if len(line.split()) > 1)


class Checker:
    """Collects failed expectations; `done()` prints them and gives the exit status."""

    def __init__(self, name):
        self.name = name
        self.failures = []
        self.checks = 0

    def expect(self, actual, expected, what):
        self.checks += 1
        if actual != expected:
            self.failures.append(f"{what}: got {actual!r}, want {expected!r}")
        return actual == expected

    def true(self, cond, what):
        self.checks += 1
        if not cond:
            self.failures.append(what)
        return bool(cond)

    def done(self):
        for f in self.failures:
            print(f"FAIL: {f}", file=sys.stderr)
        print(f"{self.name}: {self.checks - len(self.failures)}/{self.checks} checks passed")
        return 1 if self.failures else 0


class ToolResult:
    def __init__(self, args, rc, out, err, seconds):
        self.args, self.rc, self.out, self.err, self.seconds = args, rc, out, err, seconds

    def __repr__(self):
        return f"vfio-emu {' '.join(self.args)} -> {self.rc}, stderr {self.err!r}"


class Control:
    """A raw connection to the daemon's control socket, for requests the tool would never send:
    bytes out, reply lines in, every wait bounded."""

    def __init__(self, path, timeout=10):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        # A full listen backlog answers EAGAIN at once: wait for the daemon to accept.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise
                time.sleep(0.01)
        self.buf = b""
        self.eof = False  # the daemon closed the connection

    def send(self, data):
        """Sends bytes (a str is encoded); False if the daemon closed the connection."""
        try:
            self.sock.sendall(data.encode() if isinstance(data, str) else data)
            return True
        except OSError:
            return False

    def line(self, timeout=None):
        """The next reply line, parsed; None if the connection closed or nothing came in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return {"not JSON": line[:200].decode(errors="replace")}

    def request(self, req, timeout=None):
        """Sends one request (a dict, or a raw line without its newline) and returns the reply."""
        data = json.dumps(req) if isinstance(req, dict) else req
        data = data.encode() if isinstance(data, str) else data
        if not self.send(data + b"\n"):
            return None
        return self.line(timeout)

    def closed(self, timeout=None):
        """True once the daemon has closed the connection (after any pending reply lines)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return False
            try:
                if not self.sock.recv(1 << 20):
                    return True
            except OSError:
                return True

    def close(self):
        self.sock.close()


class Rig:
    """A daemon on its own directory and socket, and (after start_client) a mapping client."""

    def __init__(self, opts):
        self.opts = opts
        self.work = tempfile.mkdtemp(prefix="vfio-emu-tool.")
        # Others may traverse it, so that only the socket's own mode (0600) keeps them out.
        os.chmod(self.work, 0o755)
        self.dev = os.path.join(self.work, "dev")
        self.sock = os.path.join(self.work, "control.sock")
        self.log = os.path.join(self.work, "daemon.log")
        os.mkdir(self.dev)
        self.daemon = None
        self.client = None
        self.ready = None  # the client's "ready" JSON
        self.others = []   # processes started with spawn()
        self.connections = []  # raw control connections opened with control()

    def __enter__(self):
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        return self

    def __exit__(self, *exc):
        for c in self.connections:
            c.close()
        for p in self.others:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        self.stop_client()
        self.stop_daemon()
        if mounted(self.dev):
            print(f"harness: {self.dev} still mounted after the daemon stopped: umount -l",
                  file=sys.stderr)
            subprocess.run(["umount", "-l", self.dev], timeout=10, check=False)
        if mounted(self.dev):
            print(f"harness: {self.dev} could not be unmounted; leaving {self.work}",
                  file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        return False

    # ---- the daemon ----------------------------------------------------------------------------

    def start_daemon(self, *extra_args, timeout=10):
        with open(self.log, "w") as log:
            self.daemon = subprocess.Popen(
                [self.opts.daemon, "--transport", "fuse", "--dev-dir", self.dev,
                 "--control", self.sock, "--foreground", *[str(a) for a in extra_args]],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "vfio-emud: ready" in self.daemon_log():
                return
            if self.daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited before it was ready:\n{self.daemon_log()}")
            time.sleep(0.05)
        raise RuntimeError(f"the daemon was not ready after {timeout} s:\n{self.daemon_log()}")

    def daemon_log(self):
        try:
            # errors="replace": the daemon may log bytes a client sent (a device name, say).
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def control(self, timeout=10):
        """A raw connection to the control socket (closed at the end of the test)."""
        c = Control(self.sock, timeout)
        self.connections.append(c)
        return c

    def daemon_alive(self, check, what):
        """Whether the daemon is still running, answers `status`, and its nodes still open."""
        if not check.true(self.daemon is not None and self.daemon.poll() is None,
                          f"{what}: the daemon is running"):
            return False
        r = self.tool("--json", "status")
        ok = check.true(r.rc == 0, f"{what}: status answers: {r!r}")
        try:
            fd = os.open(os.path.join(self.dev, "vfio", "vfio"), os.O_RDWR)
            os.close(fd)
        except OSError as e:
            return check.true(False, f"{what}: the container node opens: {e}")
        return ok

    def stop_daemon(self, timeout=5):
        if self.daemon is None:
            return None
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"harness: the daemon ignored SIGTERM for {timeout} s: SIGKILL",
                      file=sys.stderr)
                self.daemon.kill()
                self.daemon.wait(timeout)
        rc = self.daemon.returncode
        self.daemon = None
        return rc

    # ---- the mapping client --------------------------------------------------------------------

    def start_client(self, *extra_args, timeout=15):
        """Starts the mapping client (with `extra_args`, e.g. "--small", 20000) and returns its
        "ready" JSON (what it mapped where)."""
        self.client = subprocess.Popen([self.opts.client, self.dev, *[str(a) for a in extra_args]],
                                       stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.client.stdout], [], [], left)[0]:
                raise RuntimeError(f"the mapping client was not ready after {timeout} s")
            chunk = os.read(self.client.stdout.fileno(), 65536)
            if not chunk:
                err = self.client.stderr.read().decode(errors="replace")
                raise RuntimeError(f"the mapping client exited: {err}\n{self.daemon_log()}")
            line += chunk
        text = line.decode()
        if not text.startswith("ready "):
            raise RuntimeError(f"the mapping client said {text!r}")
        self.ready = json.loads(text[len("ready "):])
        return self.ready

    def stop_client(self, timeout=5):
        if self.client is None:
            return
        try:
            self.client.stdin.close()  # the client waits for EOF on stdin
            self.client.wait(timeout)
        except (subprocess.TimeoutExpired, OSError):
            self.client.kill()
            self.client.wait(timeout)
        self.client = None

    # ---- the tool ------------------------------------------------------------------------------

    def spawn(self, *args):
        """Starts `vfio-emu --control SOCK ARGS...` in the background (stdout and stderr piped);
        it is killed at the end if it is still running."""
        p = subprocess.Popen([self.opts.tool, "--control", self.sock, *[str(a) for a in args]],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.others.append(p)
        return p

    def tool(self, *args, control=None, env=None, user=None, timeout=20):
        """Runs `vfio-emu --control SOCK ARGS...` (control=False: no --control option)."""
        cmd = [self.opts.tool]
        if control is not False:
            cmd += ["--control", control or self.sock]
        cmd += [str(a) for a in args]
        if user is not None:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
        full_env = dict(os.environ)
        full_env.pop("VFIO_EMU_CONTROL", None)
        full_env.update(env or {})
        start = time.monotonic()
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=full_env,
                           timeout=timeout, check=False)
        return ToolResult([str(a) for a in args], p.returncode, p.stdout.decode(errors="replace"),
                          p.stderr.decode(errors="replace"), time.monotonic() - start)

    def tool_json(self, check, *args):
        """The tool's --json result, or None (with a recorded failure) if it did not give one."""
        r = self.tool("--json", *args)
        if not check.true(r.rc == 0, f"{r!r}: exit 0"):
            return None
        try:
            return json.loads(r.out)
        except ValueError as e:
            check.true(False, f"{r!r}: stdout is not JSON ({e}): {r.out[:200]!r}")
            return None


def main(test, with_client=True, daemon_args=()):
    """Runs test(rig, check) against a fresh daemon (started with `daemon_args` added) and
    mapping client, and exits with its status; any exception is a failure with the daemon's
    log."""
    opts = parse_args()
    name = os.path.basename(sys.argv[0])
    check = Checker(name)
    try:
        with Rig(opts) as rig:
            try:
                rig.start_daemon(*daemon_args)
                if with_client:
                    rig.start_client()
                test(rig, check)
            except Exception:
                print("---- daemon log ----", file=sys.stderr)
                print(rig.daemon_log()[-4000:], file=sys.stderr)
                raise
    except Exception as e:  # noqa: BLE001 - any failure of the rig, or Stopped, fails the test
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        check.done()
        sys.exit(1)
    sys.exit(check.done())
