"""A `sluice serve` process of a client test's own: a free loopback port, a config and data
folder in the test's work folder, its log appended to `<work>/server.log`; started (and,
after a SIGKILL, started again) on the same port and data."""
import os
import socket
import subprocess
import time

import boto3
from botocore.config import Config

KEY, SECRET = "sluice", "sluice-secret"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, binary, work, config):
        self.binary = binary
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.data_dir = os.path.join(work, "data")
        self.config_path = os.path.join(work, "sluice.toml")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.log = open(os.path.join(work, "server.log"), "ab")

    def client(self, service, read_timeout=10):
        session = boto3.session.Session(aws_access_key_id=KEY, aws_secret_access_key=SECRET, region_name="us-east-1")
        cfg = Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=read_timeout)
        return session.client(service, endpoint_url=self.endpoint, config=cfg)

    def start(self):
        """Starts the server and waits until it answers; returns the process."""
        proc = subprocess.Popen([self.binary, "serve", "--config", self.config_path, "--bind", f"127.0.0.1:{self.port}",
                                 "--data-dir", self.data_dir], stdout=self.log, stderr=self.log)
        k = self.client("kinesis")
        for _ in range(600):
            try:
                k.list_streams()
                return proc
            except Exception:
                time.sleep(0.05)
        raise SystemExit("the server did not start")
