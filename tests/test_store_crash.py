"""
Crash safety of :class:`txacme.store.DirectoryStore` and
:func:`txacme.store.load_or_create_client_key`: a writer process is killed
(SIGKILL) at random moments, over and over, and after every kill the store
must load, each entry being the old bundle or the new one, whole, and the
account key must be intact.

A helper process (the "zygote") imports txacme once and forks a writer for
each round, so that a round costs milliseconds rather than an interpreter
start; the test kills the writer by its process id.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from random import Random

import txacme
from tests.support import NOW, TestCase
from tests.test_service import make_bundle
from txacme.store import CLIENT_KEY_NAME, DirectoryStore, load_or_create_client_key

SRC = Path(txacme.__file__).resolve().parent.parent

#: Rounds of each kind, and the wall-clock budget for all of them.
STORE_ROUNDS = 150
KEY_ROUNDS = 60
BUDGET = 60.0
#: The longest a writer runs before it is killed, in seconds.
MAX_LIFE = 0.03
#: The same for a key writer: loading an RSA-2048 key (cryptography checks
#: it) and making one take up to a tenth of a second each on a busy 2-core
#: machine, and some rounds must get as far as writing a new key.
KEY_MAX_LIFE = 0.5
NAMES = [f"n{index}.example" for index in range(4)]

ZYGOTE = r"""
import os, sys
from txacme.store import DirectoryStore, load_or_create_client_key

directory, bundle_a, bundle_b = sys.argv[1:4]
names = sys.argv[4:]
bundles = []
for path in (bundle_a, bundle_b):
    with open(path, "rb") as source:
        import pem
        bundles.append(pem.parse(source.read()))
store = DirectoryStore(directory)

def write_entries():
    round = 0
    while True:
        for name in names:
            failures = []
            store.store(name, bundles[round % 2]).addErrback(failures.append)
            if failures:
                os._exit(3)
        round += 1

def create_keys(keys_directory, round):
    index = 0
    while True:
        load_or_create_client_key(os.path.join(keys_directory, "existing"))
        load_or_create_client_key(
            os.path.join(keys_directory, f"new-{round}-{index}")
        )
        index += 1

print("ready", flush=True)
for line in sys.stdin:
    command = line.split()
    pid = os.fork()
    if pid == 0:
        if command[0] == "store":
            write_entries()
        else:
            create_keys(command[1], command[2])
        os._exit(0)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("dead", status, flush=True)
"""


class Zygote:
    """The helper process that forks writers on command."""

    def __init__(self, directory: Path, bundle_a: Path, bundle_b: Path) -> None:
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(SRC), *filter(None, [environment.get("PYTHONPATH")])]
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                ZYGOTE,
                str(directory),
                str(bundle_a),
                str(bundle_b),
                *NAMES,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
        )
        assert self.readline() == "ready"

    def readline(self, timeout: float = 30.0) -> str:
        """A line from the zygote, waiting at most ``timeout`` seconds."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise AssertionError("the zygote did not answer")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the zygote died: {self.process.wait(5)}")
        return line.strip()

    def kill_writer_after(self, command: str, delay: float) -> int:
        """
        Fork a writer, SIGKILL it after ``delay`` seconds, and wait for it.

        :returns: Its wait status.
        """
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        pid = int(self.readline())
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        dead, status = self.readline().split()
        assert dead == "dead"
        return int(status)

    def close(self) -> None:
        """End the zygote (closing its input ends its loop)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


class CrashTests(TestCase):
    """Writers killed at random moments never leave a broken store."""

    def setUp(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="txacme-crash-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        self.store_directory = self.root / "store"
        self.store_directory.mkdir()
        self.bundles = [
            b"".join(obj.as_bytes() for obj in make_bundle([name], NOW))
            for name in ("old.example", "new.example")
        ]
        paths = []
        for index, content in enumerate(self.bundles):
            path = self.root / f"bundle{index}.pem"
            path.write_bytes(content)
            paths.append(path)
        self.zygote = Zygote(self.store_directory, paths[0], paths[1])
        self.addCleanup(self.zygote.close)
        self.random = Random(int(time.time()))
        self.deadline = time.monotonic() + BUDGET

    def test_store_survives_kills(self) -> None:
        """
        After each of many SIGKILLs of a process storing entries in a loop,
        every entry file is exactly the old or the new bundle, mode 0600,
        and the store loads (``as_dict``, ``summaries``, ``get``), ignoring
        the temporary files the dead writer left.
        """
        seen: set[bytes] = set()
        rounds = 0
        while rounds < STORE_ROUNDS and time.monotonic() < self.deadline:
            status = self.zygote.kill_writer_after(
                "store", self.random.uniform(0.0, MAX_LIFE)
            )
            self.assertTrue(
                os.WIFSIGNALED(status), f"the writer exited by itself: {status}"
            )
            rounds += 1
            store = DirectoryStore(self.store_directory)
            entries = self.successResultOf(store.as_dict())
            summaries = self.successResultOf(store.summaries())
            self.assertEqual(sorted(entries), sorted(summaries))
            for name in entries:
                path = self.store_directory / f"{name}.pem"
                content = path.read_bytes()
                self.assertIn(content, self.bundles, f"round {rounds}: {name}")
                self.assertEqual(path.stat().st_mode & 0o777, 0o600)
                seen.add(content)
                self.assertEqual(len(self.successResultOf(store.get(name))), 2)
                self.assertIsNot(summaries[name], None)
        self.assertTrue(rounds >= 100, f"only {rounds} rounds in {BUDGET} s")
        # The writers got far enough, between kills, to write both bundles.
        self.assertEqual(seen, set(self.bundles))

    def test_account_key_survives_kills(self) -> None:
        """
        After each of many SIGKILLs of a process loading an existing account
        key and creating new ones, the existing key file is unchanged, and
        each new one is either absent or a whole key that loads.
        """
        keys = self.root / "keys"
        existing = keys / "existing"
        original = load_or_create_client_key(existing)
        original_bytes = (existing / CLIENT_KEY_NAME).read_bytes()
        rounds = 0
        while rounds < KEY_ROUNDS and time.monotonic() < self.deadline:
            self.zygote.kill_writer_after(
                f"keys {keys} {rounds}", self.random.uniform(0.0, KEY_MAX_LIFE)
            )
            rounds += 1
            self.assertEqual((existing / CLIENT_KEY_NAME).read_bytes(), original_bytes)
            for directory in keys.glob(f"new-{rounds - 1}-*"):
                key_file = directory / CLIENT_KEY_NAME
                if key_file.exists():
                    self.assertEqual(key_file.stat().st_mode & 0o777, 0o600)
                    load_or_create_client_key(directory)
            self.assertEqual(
                load_or_create_client_key(existing).thumbprint(),
                original.thumbprint(),
            )
        self.assertTrue(rounds >= 30, f"only {rounds} rounds in {BUDGET} s")
        created = [
            directory
            for directory in keys.iterdir()
            if (directory / CLIENT_KEY_NAME).exists()
        ]
        self.assertTrue(len(created) > 1)
