"""Starts `moat serve --http` for the interop scripts beside this file."""

import subprocess


def start_http(moat, config):
    """`moat serve` on an ephemeral loopback port; returns (process, URL)."""
    process = subprocess.Popen(
        [moat, "serve", "--http", "127.0.0.1:0", "--config", config],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("moat: serving") and " at " in line:
            return process, line.rsplit(" at ", 1)[1].strip()
    process.kill()
    raise RuntimeError("moat serve exited before listening")
