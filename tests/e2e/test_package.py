"""The Debian package (cmake/BmPackage.cmake, deploy/debian/): cpack builds it from the build folder; its file
list, control fields and maintainer scripts are checked after `dpkg -x`/`dpkg -e`; where the test runs as root
and no bmserver package is installed yet, it is installed with `dpkg -i`, the daemon is started by hand as the
unit would start it, `bmserver env` answers on the service's socket for a member of the bmserver group, and
`dpkg --purge` removes it again."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import SOURCE_DIR, free_port

RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
BUILD_DIR = os.environ.get("BMSERVER_BUILD_DIR", os.path.join(SOURCE_DIR, "build", "ci"))


def build_deb(out):
    for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps"):
        if not shutil.which(tool):
            raise unittest.SkipTest(f"{tool} is not installed (deploy/install-deps.sh installs dpkg-dev)")
    subprocess.run(["cpack", "-G", "DEB", "--config", os.path.join(BUILD_DIR, "CPackConfig.cmake"), "-B", out],
                   check=True, capture_output=True, text=True)
    debs = [f for f in os.listdir(out) if f.startswith("bmserver_") and f.endswith(".deb")]
    assert len(debs) == 1, debs
    return os.path.join(out, debs[0])


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bm-deb-")
        cls.deb = build_deb(os.path.join(cls.tmp, "out"))
        cls.root = os.path.join(cls.tmp, "root")
        cls.control = os.path.join(cls.tmp, "control")
        subprocess.run(["dpkg-deb", "-x", cls.deb, cls.root], check=True)
        subprocess.run(["dpkg-deb", "-e", cls.deb, cls.control], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_file_list(self):
        files = set()
        for d, _, names in os.walk(self.root):
            for n in names:
                files.add(os.path.relpath(os.path.join(d, n), self.root))
        for path in ("usr/bin/bmserverd", "usr/bin/bmserver", "usr/lib/systemd/system/bmserverd.service",
                     "etc/bmserver/bmserverd.toml", "usr/share/doc/bmserver/copyright",
                     "usr/share/doc/bmserver/changelog.gz", "usr/share/man/man1/bmserver.1.gz",
                     "usr/share/man/man8/bmserverd.8.gz",
                     "usr/share/doc/bmserver/README.md", "usr/share/doc/bmserver/docs/migrating-from-bmserver-python.md"):
            self.assertIn(path, files)
        plugin = os.path.join(BUILD_DIR, "lib", "bmserver", "libbm_backend_cuda.so")
        self.assertEqual("usr/lib/bmserver/libbm_backend_cuda.so" in files, os.path.exists(plugin))
        allowed = ("usr/bin/", "usr/lib/bmserver/", "usr/lib/systemd/system/", "etc/bmserver/",
                   "usr/share/doc/bmserver/", "usr/share/man/")
        self.assertEqual([f for f in files if not f.startswith(allowed)], [])
        for binary in ("usr/bin/bmserverd", "usr/bin/bmserver"):
            self.assertTrue(os.access(os.path.join(self.root, binary), os.X_OK))
        with open(os.path.join(self.root, "usr/lib/systemd/system/bmserverd.service")) as f:
            self.assertIn("ExecStart=/usr/bin/bmserverd --config /etc/bmserver/bmserverd.toml\n", f.read())

    def test_control_fields_and_scripts(self):
        fields = subprocess.run(["dpkg-deb", "-f", self.deb], check=True, capture_output=True, text=True).stdout
        self.assertIn("Package: bmserver\n", fields)
        depends = [l for l in fields.splitlines() if l.startswith("Depends: ")][0]
        for dep in ("libsystemd0", "libgrpc++", "adduser"):
            self.assertIn(dep, depends)
        with open(os.path.join(self.control, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/bmserver/bmserverd.toml"])
        for script in ("postinst", "prerm", "postrm"):
            path = os.path.join(self.control, script)
            self.assertTrue(os.access(path, os.X_OK), script)
            self.assertEqual(subprocess.run(["sh", "-n", path]).returncode, 0, script)
        with open(os.path.join(self.control, "postinst")) as f:
            postinst = f.read()
        for needle in ("adduser --system", "addgroup --system --quiet bmserver", "install -d -o bmserver -g bmserver",
                       "deb-systemd-helper enable 'bmserverd.service'", "deb-systemd-invoke"):
            self.assertIn(needle, postinst)
        with open(os.path.join(self.control, "postrm")) as f:
            postrm = f.read()
        self.assertIn('if [ "$1" = "purge" ]', postrm)
        self.assertIn("rm -rf /var/lib/bmserver", postrm)

    def test_lintian(self):
        lintian = shutil.which("lintian")
        self.assertIsNotNone(lintian, "lintian is missing: run deploy/install-deps.sh")
        r = subprocess.run([lintian, "--no-tag-display-limit", "--suppress-tags-from-file",
                            os.path.join(SOURCE_DIR, "deploy", "debian", "lintian-justified"), self.deb],
                           capture_output=True, text=True)
        problems = [l for l in (r.stdout + r.stderr).splitlines() if l.startswith(("E:", "W:"))]
        self.assertEqual(problems, [], r.stdout)


class InstallTest(unittest.TestCase):
    """dpkg -i on this machine: only as root, and only when no bmserver package is installed already."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("dpkg -i needs root")
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "bmserver"], capture_output=True, text=True)
        if "installed" in status.stdout and "not-installed" not in status.stdout:
            self.skipTest("a bmserver package is installed on this machine already; not touching it")
        if os.path.exists("/run/bmserver/bmserverd.sock"):
            self.skipTest("a bmserverd already listens on /run/bmserver/bmserverd.sock")
        self.tmp = tempfile.mkdtemp(prefix="bm-deb-i-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.deb = build_deb(os.path.join(self.tmp, "out"))

    def test_install_start_as_the_unit_would_and_purge(self):
        r = subprocess.run(["dpkg", "-i", self.deb], capture_output=True, text=True)
        self.addCleanup(subprocess.run, ["dpkg", "--purge", "bmserver"], capture_output=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(subprocess.run(["getent", "passwd", "bmserver"], capture_output=True).returncode, 0)
        st = os.stat("/var/lib/bmserver")
        self.assertEqual(oct(st.st_mode & 0o777), "0o750")
        # As the unit would: User/Group bmserver, RuntimeDirectory /run/bmserver (0750), its Environment=; the
        # HTTP port moved off 8080 (BMSERVER_HTTP_LISTEN beats the config file) so the test collides with nothing.
        subprocess.run(["install", "-d", "-o", "bmserver", "-g", "bmserver", "-m", "0750", "/run/bmserver"], check=True)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HF_HOME": "/var/lib/bmserver/huggingface",
               "MODELSCOPE_CACHE": "/var/lib/bmserver/modelscope", "BMSERVER_HTTP_LISTEN": f"127.0.0.1:{free_port()}"}
        daemon = subprocess.Popen([RUNUSER, "-u", "bmserver", "--", "/usr/bin/bmserverd", "--config",
                                   "/etc/bmserver/bmserverd.toml"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.time() + 30
            while not os.path.exists("/run/bmserver/bmserverd.sock") and time.time() < deadline:
                self.assertIsNone(daemon.poll(), daemon.stdout.read() if daemon.poll() is not None else "")
                time.sleep(0.1)
            # A member of the bmserver group (here: nobody with that group) uses the CLI without root.
            r = subprocess.run([RUNUSER, "-u", "nobody", "-g", "bmserver", "--", "/usr/bin/bmserver", "env", "-o",
                                "json"], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            out = json.loads(r.stdout)
            self.assertEqual(out["state_dir"], "/var/lib/bmserver")
            self.assertEqual(out["bmserver_version"], out["cli_version"])
            r = subprocess.run([RUNUSER, "-u", "nobody", "--", "/usr/bin/bmserver", "env"], capture_output=True,
                               text=True, timeout=60)
            self.assertNotEqual(r.returncode, 0, "a user outside the group must not reach the socket")
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
            daemon.stdout.close()
        r = subprocess.run(["dpkg", "-r", "bmserver"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.isdir("/var/lib/bmserver"), "remove keeps the data")
        self.assertFalse(os.path.exists("/usr/bin/bmserverd"))
        r = subprocess.run(["dpkg", "--purge", "bmserver"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists("/var/lib/bmserver"), "purge removes the data")
        self.assertFalse(os.path.exists("/etc/bmserver/bmserverd.toml"))


if __name__ == "__main__":
    unittest.main()
