"""bmserverd as a systemd Type=notify service: READY=1 only once the control socket answers and restored models
are loaded, STATUS= while restoring, WATCHDOG=1 keep-alives when WATCHDOG_USEC is set, STOPPING=1 on SIGTERM; and
the unit file passes `systemd-analyze verify` and scores well in `systemd-analyze security`."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import Daemon, SOURCE_DIR, binary
from serving_fixture import make_tiny_model

UNIT = os.path.join(SOURCE_DIR, "deploy", "bmserverd.service")


class NotifySocket:
    """The NOTIFY_SOCKET systemd gives a Type=notify service: a unix datagram socket we read."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def wait_for(self, key, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for m in self.messages:
                if key in m.split("\n"):
                    return m
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
        raise AssertionError(f"no {key} in {self.messages}")

    def receive(self, timeout):
        self.sock.settimeout(max(0.01, timeout))
        try:
            self.messages.append(self.sock.recv(4096).decode())
        except socket.timeout:
            pass

    def close(self):
        self.sock.close()


class ReadinessTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="bm-notify-")

    def tearDown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def test_ready_after_restore_status_watchdog_and_stopping(self):
        model = make_tiny_model(self.root)
        workdir = os.path.join(self.root, "d")
        os.makedirs(workdir)
        first = Daemon(workdir=workdir).start()
        r = first.cli("chat", "serve", model, "--backend", "cpu", "--kv-cache-bytes", str(16 << 20), timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        first.stop()

        notify = NotifySocket(self.root)
        self.addCleanup(notify.close)
        second = Daemon(workdir=workdir, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"})
        second.start(wait=False)
        self.addCleanup(second.close, False)
        ready = notify.wait_for("READY=1")
        # Once READY=1 is out, the control socket answers and the restored model is no longer loading.
        ps = second.cli_json("chat", "ps")
        self.assertEqual([m["state"] for m in ps["models"]], ["ready"], ps)
        self.assertIn("STATUS=serving 1 model(s)", ready)
        before_ready = notify.messages[:notify.messages.index(ready)]
        self.assertTrue(all("READY=1" not in m for m in before_ready))
        self.assertTrue(any(m.startswith("STATUS=restoring served models: loading ") for m in before_ready),
                        notify.messages)
        # The watchdog: WATCHDOG_USEC=200 ms asks for a keep-alive at least every 100 ms.
        deadline = time.time() + 60
        while notify.messages.count("WATCHDOG=1") < 3 and time.time() < deadline:
            notify.receive(timeout=deadline - time.time())
        self.assertGreaterEqual(notify.messages.count("WATCHDOG=1"), 3, notify.messages)
        second.proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        self.assertEqual(second.proc.wait(timeout=60), 0)

    def test_no_notify_socket_no_messages_and_no_harm(self):
        os.makedirs(os.path.join(self.root, "plain"))
        d = Daemon(workdir=os.path.join(self.root, "plain")).start()
        self.addCleanup(d.close)
        self.assertEqual(d.cli("chat", "ps").returncode, 0)


class UnitFileTest(unittest.TestCase):
    def test_unit_is_type_notify_and_hardened(self):
        with open(UNIT) as f:
            unit = f.read()
        for line in ("Type=notify", "NotifyAccess=main", "ProtectSystem=strict", "ProtectHome=read-only",
                     "NoNewPrivileges=yes", "PrivateTmp=yes", "DevicePolicy=closed", "DeviceAllow=char-nvidia* rw",
                     "StateDirectory=bmserver", "RuntimeDirectory=bmserver"):
            self.assertIn(line + "\n", unit)

    def test_systemd_analyze_verify_and_security(self):
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.skipTest("systemd-analyze is not installed")
        with tempfile.TemporaryDirectory() as d:
            # verify checks that ExecStart exists: point it at the binary just built.
            path = os.path.join(d, "bmserverd.service")
            with open(UNIT) as f, open(path, "w") as out:
                out.write(f.read().replace("/usr/bin/bmserverd", binary("bmserverd")))
            r = subprocess.run([analyze, "verify", path], capture_output=True, text=True)
            self.assertEqual((r.returncode, r.stderr.strip()), (0, ""), r.stderr)
            r = subprocess.run([analyze, "security", "--offline=true", path], capture_output=True, text=True)
            m = re.search(r"Overall exposure level for bmserverd\.service: (\d+\.\d+)", r.stdout)
            self.assertIsNotNone(m, r.stdout + r.stderr)
            self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)


if __name__ == "__main__":
    unittest.main()
