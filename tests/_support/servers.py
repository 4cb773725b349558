"""Private servers for tests: never the shared 6379/5432, always on free loopback ports.

Every helper is bounded in time and cleans up after itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote


@dataclass(frozen=True)
class Certificates:
    """A private certificate authority and a server certificate it signed (127.0.0.1, localhost)."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path, name: str = "test") -> Certificates:
    """Self-signed CA + server certificate, made with the openssl command line."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / f"{name}-ca.pem", directory / f"{name}-ca.key"
    cert, key, csr = directory / f"{name}-server.pem", directory / f"{name}-server.key", directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")

    def openssl(*argv: str) -> None:
        subprocess.run(["openssl", *argv], capture_output=True, timeout=60, check=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
            "-subj", f"/CN={name} test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return Certificates(ca, cert, key)


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def free_port(below: int = 65536) -> int:
    """A free loopback port (below *below*: a cluster node also listens on port + 10000)."""
    for _ in range(1000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < below:
            return port
    raise RuntimeError(f"no free port below {below}")


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


@dataclass
class RedisServer:
    """A private redis-server: start, kill -9, restart on the same port."""

    directory: Path
    port: int = field(default_factory=free_port)
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    tls: Certificates | None = None  # TLS only: no plaintext port at all
    host: str = "127.0.0.1"
    launcher: tuple[str, ...] = ()  # e.g. ("ip", "netns", "exec", name): where the server runs
    password: str | None = None  # for cli(); the server's own requirepass goes in extra

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        ports = ["--port", str(self.port)]
        if self.tls is not None:
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                     "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
                     "--tls-auth-clients", "no"]  # fmt: skip
        argv = [*self.launcher, REDIS_SERVER, *ports, "--bind", self.host, "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"), *self.extra]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, host=self.host)
        except TimeoutError as exc:  # never leave the process behind; say why it did not listen
            self.kill()
            log = self.directory / "redis.log"
            said = log.read_text(errors="replace")[-600:] if log.is_file() else "(no log)"
            raise TimeoutError(f"{exc}; redis-server's log ends: {said}") from None
        return self

    def kill(self) -> None:
        """kill -9: no shutdown, no goodbye to clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def cli(self, *args: str) -> str:
        tls = ["--tls", "--cacert", str(self.tls.ca)] if self.tls is not None else []
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        out = subprocess.run(
            [REDIS_CLI, "-h", self.host, "-p", str(self.port), *tls, *auth, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()

    def client_count(self) -> int:
        """Client connections other than the one asking."""
        return int(self.cli("info", "clients").split("connected_clients:")[1].split()[0]) - 1


@contextlib.contextmanager
def redis_server(directory: Path, *extra: str, tls: Certificates | None = None) -> Iterator[RedisServer]:
    server = RedisServer(directory, extra=extra, tls=tls).start()
    try:
        yield server
    finally:
        server.kill()


@contextlib.contextmanager
def redis_cluster(directory: Path, nodes: int = 3, replicas: int = 0) -> Iterator[list[RedisServer]]:
    """*nodes* servers joined with ``redis-cli --cluster create`` (*replicas* replicas per master);
    yields once every slot is served (and every replica is in sync)."""
    servers = [
        RedisServer(
            directory / f"node{i}",
            port=free_port(below=55535),
            extra=(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--repl-diskless-sync-delay",
                "0",
            ),
        )
        for i in range(nodes)
    ]
    try:
        for server in servers:
            server.start()
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in servers), "--cluster-replicas",
             str(replicas),
             "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in s.cli("cluster", "info") for s in servers) and all(
                "master_link_status:down" not in s.cli("info", "replication") for s in servers
            ):
                break
            time.sleep(0.1)
        else:
            raise TimeoutError("the test cluster never reached cluster_state:ok")
        yield servers
    finally:
        for server in servers:
            server.kill()


PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/local/bin"))


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster run as the postgres user (it refuses to run as root)."""

    directory: Path
    port: int = field(default_factory=free_port)
    password: str | None = None
    tls: Certificates | None = None
    host: str = "127.0.0.1"
    launcher: tuple[str, ...] = ()  # e.g. ("ip", "netns", "exec", name): where the server runs

    def _as_postgres(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.launcher, "runuser", "-u", "postgres", "--", *argv],
            capture_output=True, text=True, timeout=timeout, check=True,
        )  # fmt: skip

    def url(self, password: str | None = None, database: str = "postgres") -> str:
        secret = password if password is not None else self.password
        auth = f"postgres:{quote(secret, safe='')}@" if secret else "postgres@"
        return f"postgresql://{auth}{self.host}:{self.port}/{database}"

    def init(self) -> PostgresServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.directory, "postgres", "postgres")
        argv = [str(PG_BIN / "initdb"), "-D", str(self.directory / "data"), "-U", "postgres", "--no-sync"]
        if self.password:
            pwfile = self.directory / "pw"
            pwfile.write_text(self.password + "\n")
            shutil.chown(pwfile, "postgres", "postgres")
            argv += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            argv += ["--auth=trust"]
        self._as_postgres(*argv, timeout=120)
        if self.host != "127.0.0.1":  # initdb only lets loopback in
            method = "scram-sha-256" if self.password else "trust"
            with (self.directory / "data" / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.host}/24 {method}\n")
        return self

    def start(self) -> PostgresServer:
        options = f"-p {self.port} -c listen_addresses={self.host} -k {self.directory} -c fsync=off"
        if self.tls is not None:
            # The server reads its key as the postgres user and refuses a key others can read.
            for name in ("cert", "key"):
                copy = self.directory / f"server.{name}"
                shutil.copy(getattr(self.tls, name), copy)
                shutil.chown(copy, "postgres", "postgres")
                copy.chmod(0o600)
            options += (
                f" -c ssl=on -c ssl_cert_file={self.directory}/server.cert -c ssl_key_file={self.directory}/server.key"
            )
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-o", options,
            "-l", str(self.directory / "log"), "-w", "-t", "30", "start",
        )  # fmt: skip
        return self

    def sql(self, query: str) -> str:
        env = {**os.environ, "PGPASSWORD": self.password or "", "PGSSLMODE": "prefer"}
        out = subprocess.run(
            ["psql", "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-Atc", query],
            capture_output=True, text=True, timeout=30, check=True, env=env,
        )  # fmt: skip
        return out.stdout.strip()

    def client_count(self) -> int:
        """Client connections other than the one asking."""
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return int(self.sql(query))

    def stop(self, mode: str = "immediate") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-m", mode, "-w", "stop")

    def base_backup_from(self, primary: PostgresServer) -> PostgresServer:
        """Make this (not yet started) cluster a streaming standby of *primary*: ``pg_basebackup -R``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.directory, "postgres", "postgres")
        self._as_postgres(
            str(PG_BIN / "pg_basebackup"), "-h", primary.host, "-p", str(primary.port), "-U", "postgres",
            "-D", str(self.directory / "data"), "-R", "-X", "stream", "--no-sync", timeout=120,
        )  # fmt: skip
        return self

    def promote(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-w", "-t", "30", "promote")


@contextlib.contextmanager
def replicated_postgres() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A private primary and a hot standby streaming from it (made by ``pg_basebackup -R``)."""
    directory = Path(tempfile.mkdtemp(prefix="abs-pg-repl-"))
    os.chmod(directory, 0o755)  # noqa: S103 - the postgres user must reach its data directories
    primary = PostgresServer(directory / "primary")
    standby = PostgresServer(directory / "standby")
    try:
        primary.init().start()
        standby.base_backup_from(primary).start()
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def postgres_server(
    password: str | None = None, tls: Certificates | None = None, host: str = "127.0.0.1",
    launcher: tuple[str, ...] = (),
) -> Iterator[PostgresServer]:  # fmt: skip
    # Not under pytest's tmp_path: its parents are private to root, and postgres must traverse them.
    directory = Path(tempfile.mkdtemp(prefix="abs-pg-"))
    os.chmod(directory, 0o755)  # noqa: S103 - the postgres user must reach its data directory
    server = PostgresServer(directory / "cluster", password=password, tls=tls, host=host, launcher=launcher)
    try:
        yield server.init().start()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@dataclass
class PgBouncer:
    """A private pgbouncer in front of a private PostgreSQL server, run as the postgres user
    (it refuses to run as root). ``pool_mode`` is ``transaction`` or ``session``."""

    directory: Path
    upstream: PostgresServer
    pool_mode: str = "transaction"
    pool_size: int = 20
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PgBouncer:
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.directory, "postgres", "postgres")
        users = self.directory / "userlist.txt"
        users.write_text('"postgres" ""\n')
        ini = self.directory / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.upstream.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\n"
            f"pool_mode = {self.pool_mode}\ndefault_pool_size = {self.pool_size}\nmax_client_conn = 1000\n"
            f"logfile = {self.directory / 'pgbouncer.log'}\npidfile = {self.directory / 'pgbouncer.pid'}\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        for path in (users, ini):
            shutil.chown(path, "postgres", "postgres")
        self.process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", PGBOUNCER, str(ini)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def pgbouncer(server: PostgresServer, pool_mode: str = "transaction", pool_size: int = 20) -> Iterator[PgBouncer]:
    """A pgbouncer in *pool_mode* in front of *server*, stopped (and its directory removed) afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="abs-pgbouncer-"))
    os.chmod(directory, 0o755)  # noqa: S103 - the postgres user writes its log and pid file here
    bouncer = PgBouncer(directory / "bouncer", server, pool_mode=pool_mode, pool_size=pool_size)
    try:
        yield bouncer.start()
    finally:
        bouncer.stop()
        shutil.rmtree(directory, ignore_errors=True)


REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"


@dataclass
class SentinelGroup:
    """A master, its replica and three sentinels watching them as ``mymaster``, all on loopback."""

    master: RedisServer
    replica: RedisServer
    sentinels: list[subprocess.Popen[bytes]]
    ports: list[int]
    service: str = "mymaster"
    password: str | None = None  # the master's and the replica's (requirepass, masterauth)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis+sentinel://{auth}{hosts}/{self.service}/0"

    def master_port(self) -> int:
        """The master's port as the first sentinel reports it now."""
        out = subprocess.run(
            [REDIS_CLI, "-p", str(self.ports[0]), "sentinel", "get-master-addr-by-name", self.service],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        return int(out.stdout.split()[1])


@contextlib.contextmanager
def sentinel_group(directory: Path, down_after_ms: int = 1000, password: str | None = None) -> Iterator[SentinelGroup]:
    """Start the group and wait until the replica is in sync and every sentinel knows it and the other two."""
    auth = ("--requirepass", password, "--masterauth", password) if password else ()
    master = RedisServer(directory / "master", extra=("--repl-diskless-sync-delay", "0", *auth), password=password)
    replica = RedisServer(directory / "replica", password=password)
    sentinels: list[subprocess.Popen[bytes]] = []
    ports = [free_port() for _ in range(3)]
    try:
        master.start()
        replica.extra = ("--replicaof", "127.0.0.1", str(master.port), *auth)
        replica.start()
        for i, port in enumerate(ports):
            home = directory / f"sentinel{i}"
            home.mkdir(parents=True, exist_ok=True)
            conf = home / "sentinel.conf"  # the sentinel rewrites it: its own copy, writable
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {home}\nlogfile {home / 'sentinel.log'}\n"
                f"sentinel monitor mymaster 127.0.0.1 {master.port} 2\n"
                f"sentinel down-after-milliseconds mymaster {down_after_ms}\n"
                "sentinel failover-timeout mymaster 10000\nsentinel parallel-syncs mymaster 1\n"
                + (f'sentinel auth-pass mymaster "{password}"\n' if password else "")
            )
            sentinels.append(
                subprocess.Popen([REDIS_SENTINEL, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            wait_for_port(port)
        group = SentinelGroup(master, replica, sentinels, ports, password=password)
        deadline = time.monotonic() + 30
        while True:
            infos = [
                subprocess.run([REDIS_CLI, "-p", str(p), "info", "sentinel"], capture_output=True, text=True,
                               timeout=10, check=True).stdout
                for p in ports
            ]  # fmt: skip
            linked = "master_link_status:up" in replica.cli("info", "replication")  # synced, not just attached
            if linked and all("slaves=1,sentinels=3" in info for info in infos):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the sentinels never saw the replica and each other")
            time.sleep(0.2)
        yield group
    finally:
        for process in sentinels:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        replica.kill()
        master.kill()
