"""bmserverd <-> bmserver end to end: env, version, socket life cycle, bad input, hostile bytes."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import BIN_DIR, Daemon, DaemonTestCase, binary, free_port

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_DAEMON = 3
TOKEN = "0123456789abcdef0123456789abcdef-s3cret"  # at least 32 characters (kMinTokenBytes)


class EnvTest(DaemonTestCase):
    def test_env_table(self):
        r = self.daemon.cli("env")
        self.assertEqual(r.returncode, 0, r.stderr)
        for heading in ("BMServer", "NVIDIA GPUs", "CUDA runtime", "NCCL", "cuBLAS", "CPU (the cpu backend)", "SIMD",
                        "GEMM path", "quantized kernel", "Quantized weights", "GPU topology"):
            self.assertIn(heading, r.stdout)
        self.assertIn(f"http://127.0.0.1:{self.daemon.http_port}", r.stdout)

    def test_env_json(self):
        env = self.daemon.cli_json("env")
        self.assertEqual(env["cli_version"], env["daemon_version"])
        self.assertGreaterEqual(env["cpu"]["logical_cores"], 1)
        self.assertGreater(int(env["cpu"]["memory_total_bytes"]), 0)
        self.assertEqual(env["state_dir"], self.daemon.state_dir)
        # The quantized formats the engine serves, and which CPU kernels run them (issue 15: env shows them).
        self.assertEqual(env["quantization_formats"], ["gptq-int4", "gptq-int8", "awq-int4"])
        self.assertIn(env["cpu"]["gemm_path"], ("avx512-bf16", "avx512", "avx2", "scalar"))
        self.assertTrue(env["cpu"]["quantized_kernel"])
        # Without a GPU the daemon says so in a sentence; with one it lists it.
        if not env["gpus"]:
            self.assertTrue(env["gpu_status"])
        # The GPU topology (NVLink or PCIe per pair, from NVML) or, where there is nothing to give, why.
        if len(env["gpus"]) >= 2:
            self.assertEqual(len(env["gpu_links"]), len(env["gpus"]) * (len(env["gpus"]) - 1) // 2)
            for link in env["gpu_links"]:
                self.assertRegex(link["description"], r"^(NVLink|PCIe)")
        else:
            self.assertEqual(env.get("gpu_links", []), [])
            self.assertTrue(env["topology_status"])
            if "libnvidia-ml.so.1 could not be loaded" in env["gpu_status"]:
                self.assertEqual(env["topology_status"], "NVML not available (libnvidia-ml.so.1 could not be loaded)")
        for key in ("driver_version", "cuda_runtime_version", "nccl_version", "cublas_version", "cuda_plugin"):
            self.assertIn(key, env)

    def test_version_shows_both(self):
        r = self.daemon.cli("--version")
        self.assertEqual(r.returncode, 0)
        lines = r.stdout.strip().splitlines()
        self.assertTrue(lines[0].startswith("bmserver "))
        self.assertTrue(lines[1].startswith("bmserverd "))
        self.assertNotIn("not reachable", lines[1])

    def test_output_flag_before_subcommand(self):
        r = self.daemon.cli("-o", "json", "env")
        self.assertEqual(r.returncode, 0, r.stderr)
        json.loads(r.stdout)

    def test_unknown_cli_flag(self):
        r = self.daemon.cli("env", "--frobnicate")
        self.assertEqual(r.returncode, EXIT_USAGE)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_bad_output_format(self):
        r = self.daemon.cli("env", "-o", "yaml")
        self.assertEqual(r.returncode, EXIT_USAGE)


class NoDaemonTest(unittest.TestCase):
    def test_no_daemon_message_and_exit_code(self):
        path = os.path.join(tempfile.mkdtemp(), "none.sock")
        r = subprocess.run([binary("bmserver"), "--daemon", "unix:" + path, "env"], capture_output=True, text=True)
        self.assertEqual(r.returncode, EXIT_NO_DAEMON)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(path, lines[0])
        self.assertIn("systemctl start bmserverd", lines[0])

    def test_env_var_address(self):
        path = os.path.join(tempfile.mkdtemp(), "none.sock")
        env = dict(os.environ, BMSERVER_DAEMON="unix:" + path)
        r = subprocess.run([binary("bmserver"), "env"], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, EXIT_NO_DAEMON)
        self.assertIn(path, r.stderr)

    def test_socket_file_that_nobody_serves(self):
        d = tempfile.mkdtemp()
        path = os.path.join(d, "dead.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()  # the file stays, nobody listens
        r = subprocess.run([binary("bmserver"), "--daemon", "unix:" + path, "env"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, EXIT_NO_DAEMON, r.stderr)


class SocketLifecycleTest(unittest.TestCase):
    def test_second_daemon_on_the_same_socket_refused(self):
        first = Daemon().start()
        try:
            # Its own state dir (a shared one is refused earlier, see test_state.py): the socket is what collides.
            second = Daemon(workdir=first.workdir)
            second.state_dir = os.path.join(first.workdir, "state2")
            r = subprocess.run(second.args(), capture_output=True, text=True, timeout=30, env=second.env)
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stderr.strip(), f"bmserverd: another bmserverd is already answering on {first.socket_path}")
            self.assertEqual(first.cli("env").returncode, 0, "the first daemon must be unharmed")
        finally:
            first.close()

    def test_socket_dir_holds_nothing_but_the_socket(self):
        """The socket is bound in a private staging folder and renamed into place: none is left behind."""
        d = Daemon().start()
        try:
            self.assertEqual(sorted(n for n in os.listdir(d.workdir) if n.startswith(".bmsock")), [])
        finally:
            d.close()

    def test_stale_socket_cleaned(self):
        d = Daemon()
        os.makedirs(d.workdir, exist_ok=True)
        s = socket.socket(socket.AF_UNIX)
        s.bind(d.socket_path)
        s.close()
        d.start()
        try:
            self.assertEqual(d.cli("env").returncode, 0)
        finally:
            d.close()

    def test_kill9_leaves_stale_socket_that_restart_cleans(self):
        d = Daemon().start()
        d.kill()
        self.assertTrue(os.path.exists(d.socket_path))
        d2 = Daemon(workdir=d.workdir).start()
        try:
            self.assertEqual(d2.cli("env").returncode, 0)
        finally:
            d2.close()

    def test_sigterm_clean_exit_socket_gone(self):
        d = Daemon().start()
        self.assertEqual(os.stat(d.socket_path).st_mode & 0o777, 0o660)
        rc = d.stop(signal.SIGTERM)
        self.assertEqual(rc, 0)
        self.assertFalse(os.path.exists(d.socket_path))
        d.close()

    def test_sigint_clean_exit(self):
        d = Daemon().start()
        self.assertEqual(d.stop(signal.SIGINT), 0)
        self.assertFalse(os.path.exists(d.socket_path))
        d.close()

    def test_user_mode_socket_is_0600(self):
        runtime = tempfile.mkdtemp()
        d = Daemon(env={"XDG_RUNTIME_DIR": runtime})
        d.start()
        try:
            self.assertEqual(os.stat(d.socket_path).st_mode & 0o777, 0o600)
        finally:
            d.close()

    def test_refuses_to_replace_a_regular_file(self):
        d = Daemon()
        os.makedirs(d.workdir, exist_ok=True)
        with open(d.socket_path, "w") as f:
            f.write("precious")
        r = subprocess.run(d.args(), capture_output=True, text=True, timeout=30, env=d.env)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not a socket", r.stderr)
        with open(d.socket_path) as f:
            self.assertEqual(f.read(), "precious")


class HostileBytesTest(DaemonTestCase):
    def test_garbage_on_unix_socket(self):
        for payload in (b"\x00" * 100, b"GET / HTTP/1.1\r\n\r\n", os.urandom(4096), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(512)):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect(self.daemon.socket_path)
            try:
                s.sendall(payload)
                s.recv(100)
            except OSError:
                pass
            s.close()
        # Half-open connections that never speak.
        idle = [socket.socket(socket.AF_UNIX) for _ in range(20)]
        for s in idle:
            s.connect(self.daemon.socket_path)
        self.assertEqual(self.daemon.cli("env").returncode, 0)
        for s in idle:
            s.close()
        self.assertIsNone(self.daemon.proc.poll())


def make_tls_material(workdir):
    key = os.path.join(workdir, "key.pem")
    cert = os.path.join(workdir, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    token = os.path.join(workdir, "token")
    with open(token, "w") as f:
        f.write(TOKEN + "\n")
    return cert, key, token


class TcpControlTest(unittest.TestCase):
    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="bm-tcp-")
        self.cert, self.key, self.token = make_tls_material(self.workdir)
        self.port = free_port()
        self.daemon = Daemon(workdir=self.workdir, extra_args=["--tls-cert", self.cert, "--tls-key", self.key,
                                                               "--token-file", self.token])
        self.daemon.address = f"tcp:127.0.0.1:{self.port}"
        self.daemon.proc = None

    def tearDown(self):
        self.daemon.close()

    def start(self):
        self.daemon.log = open(self.daemon.log_path, "ab")
        self.daemon.proc = subprocess.Popen(self.daemon.args(), env=self.daemon.env, stdout=self.daemon.log,
                                            stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.fail("TCP control port did not open: " + self.daemon.read_log())

    def cli(self, *args, token=TOKEN):
        env = {"BMSERVER_TLS_CA": self.cert, "BMSERVER_TOKEN": token}
        return self.daemon.cli(*args, env=env)

    def test_tls_and_token(self):
        self.start()
        r = self.cli("env")
        self.assertEqual(r.returncode, 0, r.stderr + self.daemon.read_log())
        bad = self.cli("env", token="wrong")
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("token", bad.stderr)

    def test_wrong_tokens_are_unauthenticated_and_the_daemon_serves_on(self):
        self.start()
        # A prefix, an extension and a one-character change of the real token: all refused alike.
        for wrong in (TOKEN[:-1], TOKEN + "x", "X" + TOKEN[1:]):
            with self.subTest(wrong=wrong):
                r = self.cli("chat", "ps", token=wrong)
                self.assertEqual(r.returncode, EXIT_FAILED, r.stderr)
                self.assertEqual(r.stderr.strip(), "bmserver: the bearer token was not accepted")
        self.assertIsNone(self.daemon.proc.poll())
        self.assertEqual(self.cli("chat", "ps").returncode, 0)

    def test_short_token_refused_at_start(self):
        with open(self.token, "w") as f:
            f.write("short-token\n")
        r = subprocess.run(self.daemon.args(), capture_output=True, text=True, timeout=30, env=self.daemon.env)
        self.assertEqual(r.returncode, EXIT_FAILED)
        self.assertEqual(r.stderr.strip(),
                         f"bmserverd: token file {self.token} holds 11 characters; TCP control needs a token of at "
                         f"least 32 (e.g. `openssl rand -hex 32 > {self.token}`)")
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()

    def test_token_with_a_space_refused_at_start(self):
        with open(self.token, "w") as f:
            f.write("0123456789abcdef 0123456789abcdef0123\n")
        r = subprocess.run(self.daemon.args(), capture_output=True, text=True, timeout=30, env=self.daemon.env)
        self.assertEqual(r.returncode, EXIT_FAILED)
        self.assertIn("cannot travel in an HTTP/2 header", r.stderr)

    def test_garbage_on_tcp_port(self):
        self.start()
        for payload in (os.urandom(2048), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello", b"\xff" * 10000):
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                s.sendall(payload)
                s.recv(100)
                s.close()
            except OSError:
                pass
        self.assertIsNone(self.daemon.proc.poll())
        self.assertEqual(self.cli("env").returncode, 0)

    def test_tcp_without_tls_refused(self):
        args = [binary("bmserverd"), "--listen", f"tcp:127.0.0.1:{self.port}", "--state-dir", self.daemon.state_dir]
        r = subprocess.run(args, capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, EXIT_USAGE)
        self.assertIn("TLS", r.stderr)


class DaemonBadInputTest(unittest.TestCase):
    def run_daemon(self, *args, env=None):
        run_env = dict(os.environ)
        run_env.pop("XDG_RUNTIME_DIR", None)
        run_env.update(env or {})
        return subprocess.run([binary("bmserverd"), *args], capture_output=True, text=True, timeout=20, env=run_env)

    def assert_one_line_failure(self, r, needle):
        self.assertNotEqual(r.returncode, 0)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(needle, lines[0])

    def test_unknown_flag(self):
        self.assert_one_line_failure(self.run_daemon("--frobnicate"), "frobnicate")

    def test_bad_listen(self):
        d = tempfile.mkdtemp()
        for bad in ("http://x", "unix:relative.sock", "tcp:nohostport", "tcp:127.0.0.1:99999"):
            r = self.run_daemon("--listen", bad, "--state-dir", os.path.join(d, "state"))
            self.assert_one_line_failure(r, bad)
        self.assertEqual(os.listdir(d), [], "nothing may be created")

    def test_unwritable_state_dir(self):
        d = tempfile.mkdtemp()
        blocker = os.path.join(d, "file")
        open(blocker, "w").close()
        sock = os.path.join(d, "run", "s.sock")
        r = self.run_daemon("--listen", "unix:" + sock, "--state-dir", os.path.join(blocker, "state"))
        self.assert_one_line_failure(r, "state dir")
        self.assertFalse(os.path.exists(os.path.join(d, "run")))

    def test_config_unknown_key(self):
        d = tempfile.mkdtemp()
        cfg = os.path.join(d, "c.toml")
        with open(cfg, "w") as f:
            f.write('log_level = "info"\nlisten_addr = "unix:/tmp/x.sock"\n')
        r = self.run_daemon("--config", cfg)
        self.assert_one_line_failure(r, "listen_addr")
        self.assertIn(":2:", r.stderr)

    def test_config_wrong_type(self):
        d = tempfile.mkdtemp()
        cfg = os.path.join(d, "c.toml")
        with open(cfg, "w") as f:
            f.write("log_level = 3\n")
        self.assert_one_line_failure(self.run_daemon("--config", cfg), "log_level")

    def test_bad_log_level(self):
        self.assert_one_line_failure(self.run_daemon("--log-level", "loud"), "loud")

    def test_help_lists_every_setting(self):
        r = self.run_daemon("--help")
        self.assertEqual(r.returncode, 0)
        for flag, env in (("--listen", "BMSERVER_LISTEN"), ("--http-listen", "BMSERVER_HTTP_LISTEN"),
                          ("--state-dir", "BMSERVER_STATE_DIR"), ("--config", "BMSERVER_CONFIG"),
                          ("--log-level", "BMSERVER_LOG_LEVEL")):
            self.assertIn(flag, r.stdout)
            self.assertIn(env, r.stdout)


class ControlBadInputTest(DaemonTestCase):
    """Bad values that reach the daemon's RPCs: refused with the exact status and sentence, nothing changes, and the
    daemon serves on."""

    def assert_alive(self):
        self.assertIsNone(self.daemon.proc.poll())
        self.assertEqual(self.daemon.cli_json("chat", "ps")["models"], [])

    def test_download_revisions_that_could_leave_the_cache_are_refused(self):
        cases = {
            "../../../../tmp/owned": "'.' and '..' parts are not allowed",
            "main/../../x": "'.' and '..' parts are not allowed",
            "/etc/passwd": "it has an empty part (a leading, trailing or doubled '/')",
            "refs//pr": "it has an empty part (a leading, trailing or doubled '/')",
            "main branch": "only letters, digits, '.', '_', '-' and '/' may appear",
            "v1;rm -rf": "only letters, digits, '.', '_', '-' and '/' may appear",
            "a" * 256: "longer than 255 bytes",
        }
        for revision, why in cases.items():
            with self.subTest(revision=revision[:20]):
                r = self.daemon.cli("chat", "download", "qwen2.5-0.5b-origin", "--revision", revision)
                self.assertEqual(r.returncode, EXIT_USAGE, r.stderr)
                shown = revision if len(revision) <= 300 else revision[:300] + "..."
                self.assertEqual(r.stderr.strip(),
                                 f'bmserver: revision "{shown}" is not a branch, tag or commit: {why}')
        self.assert_alive()

    def test_serve_folder_with_dotdot_refused(self):
        path = os.path.join(self.daemon.workdir, "nowhere", "..", "..", "etc")
        r = self.daemon.cli("chat", "serve", path, "--backend", "cpu")
        self.assertEqual(r.returncode, EXIT_FAILED, r.stderr)
        self.assertEqual(r.stderr.strip(),
                         f"bmserver: model folder \"{path}\" contains a '..' part; give the path without it")
        self.assert_alive()

    def test_serve_relative_folder_refused(self):
        r = self.daemon.cli("chat", "serve", "./no-such-model", "--backend", "cpu")
        self.assertEqual(r.returncode, EXIT_FAILED, r.stderr)
        self.assertIn('model folder "./no-such-model" is not an absolute path', r.stderr)
        self.assert_alive()

    def test_serve_local_dir_with_dotdot_refused(self):
        local = os.path.join(self.daemon.workdir, "store", "..", "..")
        r = self.daemon.cli("chat", "serve", "qwen2.5-0.5b-origin", "--local-dir", local, "--backend", "cpu")
        self.assertEqual(r.returncode, EXIT_FAILED, r.stderr)
        self.assertEqual(r.stderr.strip(),
                         f"bmserver: --local-dir \"{local}\" contains a '..' part; give the path without it")
        self.assert_alive()

    def test_serve_flag_values_out_of_range(self):
        for args in (["--gpu-memory-utilization", "2"], ["--max-num-seqs", "0"], ["--backend", "warp"],
                     ["--max-model-len", "-5"], ["--hub", "github"], ["--gpus", "zero"]):
            with self.subTest(args=args):
                r = self.daemon.cli("chat", "serve", "qwen2.5-0.5b-origin", *args)
                self.assertEqual(r.returncode, EXIT_USAGE, r.stderr)
                self.assertIn(args[0], r.stderr)
        self.assert_alive()

    def test_stop_of_a_model_not_served(self):
        r = self.daemon.cli("chat", "stop", "qwen2.5-0.5b-origin")
        self.assertEqual(r.returncode, EXIT_FAILED)
        self.assertEqual(r.stderr.strip(), "bmserver: 'qwen2.5-0.5b-origin' is not served (served: none)")
        self.assert_alive()

    def test_unreachable_tcp_daemon(self):
        port = free_port()
        r = subprocess.run([binary("bmserver"), "--daemon", f"tcp:127.0.0.1:{port}", "chat", "ps"],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, BMSERVER_TOKEN=TOKEN))
        self.assertEqual(r.returncode, EXIT_NO_DAEMON, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn(f"127.0.0.1:{port}", r.stderr)

    def test_malformed_daemon_address(self):
        r = subprocess.run([binary("bmserver"), "--daemon", "http://localhost:1", "chat", "ps"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, EXIT_USAGE, r.stderr)
        self.assertIn("http://localhost:1", r.stderr)
        self.assert_alive()


class PrecedenceTest(unittest.TestCase):
    """flag > env > config file > default, observed through `bmserver env -o json` (state_dir, http_listen)."""

    def test_precedence(self):
        work = tempfile.mkdtemp()
        cfg = os.path.join(work, "c.toml")
        with open(cfg, "w") as f:
            f.write(f'http_listen = "127.0.0.1:1111"\nstate_dir = "{work}/from-file"\nlog_level = "debug"\n')
        d = Daemon(workdir=work, env={"BMSERVER_HTTP_LISTEN": "127.0.0.1:2222", "BMSERVER_CONFIG": cfg})
        # Drop the harness's own --state-dir/--http-listen so the env and file values can show through.
        d.args = lambda: [binary("bmserverd"), "--listen", d.address]
        d.start()
        try:
            env = d.cli_json("env")
            self.assertEqual(env["http_listen"], "127.0.0.1:2222")  # env beats file
            self.assertEqual(env["state_dir"], f"{work}/from-file")  # file beats default
        finally:
            d.close()
        d2 = Daemon(workdir=tempfile.mkdtemp(), env={"BMSERVER_HTTP_LISTEN": "127.0.0.1:2222"})
        d2.start()  # the harness passes --http-listen: flag beats env
        try:
            self.assertEqual(d2.cli_json("env")["http_listen"], f"127.0.0.1:{d2.http_port}")
        finally:
            d2.close()


if __name__ == "__main__":
    unittest.main()


class CudaPluginFallbackTest(unittest.TestCase):
    """The daemon loads the CUDA plugin at run time and carries on without it (no driver, no plugin, a bad one)."""

    def env_with_plugin(self, plugin):
        d = Daemon(env={"BMSERVER_CUDA_PLUGIN": plugin}).start()
        try:
            return d.cli_json("env")
        finally:
            d.close()

    def test_missing_plugin(self):
        env = self.env_with_plugin("/nonexistent/libbm_backend_cuda.so")
        self.assertIn("not installed", env["cuda_plugin"])
        self.assertEqual(env["cuda_runtime_version"], "")

    def test_broken_plugin(self):
        bad = os.path.join(tempfile.mkdtemp(), "libbm_backend_cuda.so")
        with open(bad, "wb") as f:
            f.write(b"\x7fELF garbage")
        env = self.env_with_plugin(bad)
        self.assertIn("not loaded", env["cuda_plugin"])

    def test_built_plugin_reports_versions(self):
        plugin = os.path.join(BIN_DIR, "..", "lib", "bmserver", "libbm_backend_cuda.so")
        if not os.path.exists(plugin):
            self.skipTest("the CUDA plugin is not built here (BMSERVER_CUDA=OFF or no nvcc)")
        env = self.env_with_plugin(os.path.abspath(plugin))
        self.assertEqual(env["cuda_plugin"], os.path.abspath(plugin))
        self.assertRegex(env["cuda_runtime_version"], r"^\d+\.\d+$")
        # NCCL is dlopened by the plugin for its version only; without it env says so in a sentence.
        self.assertRegex(env["nccl_version"], r"^(\d+\.\d+\.\d+|not available \(.*\))$")
        self.assertRegex(env["cublas_version"], r"^\d+\.\d+\.\d+$")
        if not env["gpus"]:
            self.assertTrue(env["gpu_status"])  # no driver here: said in a sentence
